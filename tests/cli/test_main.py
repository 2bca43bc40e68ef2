"""The command line frame: help, subcommand discovery, one-line errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys

from medseg3d.cli.main import SUBCOMMANDS


def test_help_lists_every_subcommand(cli):
    result = cli("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


def test_building_the_parser_does_not_import_torch():
    code = "import sys; from medseg3d.cli.main import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_errors_are_one_line_without_traceback_and_debug_shows_it(cli, tmp_path):
    missing = tmp_path / "missing.nii.gz"
    result = cli("info", missing)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("medseg3d: error:") and str(missing.name) in lines[-1]
    debug = cli("--debug", "info", missing)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_no_command_prints_help_and_fails(cli):
    result = cli()
    assert result.returncode == 2 and "COMMAND" in result.stdout
