"""The ``medseg3d`` command line: one module per subcommand, discovered by :mod:`medseg3d.cli.main`."""
