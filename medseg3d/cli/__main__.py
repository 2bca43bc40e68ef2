from medseg3d.cli.main import main

raise SystemExit(main())
