"""Entry point of the ``medseg3d`` command.

Each subcommand lives in its own module ``medseg3d/cli/<name>.py`` defining::

    HELP = "one line shown in `medseg3d --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...        # the exit code

A :class:`~medseg3d.errors.MedsegError` escaping ``run`` is printed as one line
(``medseg3d: error: ...``) without a traceback, and the exit code is non-zero.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from medseg3d import __version__
from medseg3d.errors import MedsegError

#: Subcommands in the order ``--help`` lists them; a module that does not exist yet is skipped.
SUBCOMMANDS = (
    "info",
    "convert",
    "train",
    "predict",
    "evaluate",
    "batch",
    "demo",
    "models",
)


def _load_subcommands():
    modules = {}
    for name in SUBCOMMANDS:
        module_name = f"medseg3d.cli.{name.replace('-', '_')}"
        try:
            modules[name] = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
    return modules


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(
        prog="medseg3d",
        description="Segment 3D medical volumes (MRI, CT) with the U-Net family.",
    )
    parser.add_argument("--version", action="version", version=f"medseg3d {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = _load_subcommands()
    for name, module in modules.items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
    return parser, modules


def main(argv: Sequence[str] | None = None) -> int:
    parser, modules = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose + 1, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(modules[args.command].run(args) or 0)
    except MedsegError as error:
        if args.debug:
            raise
        print(f"medseg3d: error: {error}", file=sys.stderr)
        return error.exit_code
    except (
        OSError
    ) as error:  # the system refused a read or write: disk full, permissions, share gone
        if args.debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        print(f"medseg3d: error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("medseg3d: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
