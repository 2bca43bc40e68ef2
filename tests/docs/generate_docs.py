"""Regenerate the generated parts of the documentation from the code, so they never drift.

    python tests/docs/generate_docs.py          # rewrite the generated parts of the docs
    python tests/docs/generate_docs.py --check  # exit 1 when a page is out of date (what CI runs)

Only the text between ``<!-- BEGIN GENERATED: NAME -->`` and ``<!-- END GENERATED: NAME -->``
markers is replaced; the prose around it is written by hand.

* ``configuration``: :func:`medseg3d.training.config.describe` (every key, default, meaning);
* ``commands`` and ``command:<name>``: the list of commands and the option table of
  ``medseg3d <name>`` from its argparse parser;
* ``architectures``: every registered model with its parameters and FLOPs.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
MARKER = re.compile(
    r"(<!-- BEGIN GENERATED: (?P<name>[\w:-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED: (?P=name) -->)",
    re.DOTALL,
)


def subcommand_parsers() -> dict[str, argparse.ArgumentParser]:
    """``{name: parser}`` of every ``medseg3d`` subcommand, as ``medseg3d --help`` lists them."""
    from medseg3d.cli.main import build_parser

    parser, _ = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _cell(text: str) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def options_table(parser: argparse.ArgumentParser) -> str:
    """A Markdown table of a parser's arguments: option, value, default, meaning."""
    rows = ["| option | value | default | meaning |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            name = ", ".join(f"`{option}`" for option in action.option_strings)
        else:
            name = f"`{action.metavar or action.dest}` (positional)"
        if action.nargs == 0:
            value = ""
        elif action.choices is not None:
            value = " \\| ".join(f"`{choice}`" for choice in action.choices)
        else:
            metavar = action.metavar or action.dest.upper()
            metavar = " ".join(metavar) if isinstance(metavar, tuple) else metavar
            value = f"`{metavar}`" + (" …" if action.nargs in ("+", "*") else "")
        if action.required and action.nargs not in ("?", "*"):
            default = "required"
        elif action.default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0:
            default = ""
        else:
            default = f"`{action.default}`"
        help_text = (action.help or "").replace("%(default)s", str(action.default))
        if isinstance(action, argparse._AppendAction) and "repeat" not in help_text:
            help_text += " (repeatable)"
        rows.append(f"| {name} | {value} | {default} | {_cell(help_text)} |")
    return "\n".join(rows) + "\n"


def commands_table() -> str:
    """One row per subcommand: its name (linked to its section) and its one-line help."""
    from medseg3d.cli.main import _load_subcommands

    rows = ["| command | does |", "|---|---|"]
    for name, module in _load_subcommands().items():
        rows.append(f"| [`{name}`](#{name}) | {_cell(module.HELP)} |")
    return "\n".join(rows) + "\n"


def architectures_table() -> str:
    """Every registered model: its description, parameters and GFLOPs (counted on the meta
    device, so nothing is allocated or run): 3D at 1x1x96^3 with features 16 (the setting of
    docs/benchmarks/models.md), and parameters at the defaults (features 32) in 3D and 2D."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medseg3d.nn import MODELS, build_model

    rows = [
        "| model | what it is | params 3D, f=16 | GFLOPs 3D, 96³, f=16 | params 3D, f=32 | params 2D, f=32 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in MODELS.names():
        with torch.device("meta"):
            small = build_model(name, 3, 1, 2, features=16, depth=4).eval()
            with FlopCounterMode(display=False) as counter:
                small(torch.empty(1, 1, 96, 96, 96))
            default_3d = build_model(name, 3, 1, 2, features=32, depth=4)
            default_2d = build_model(name, 2, 1, 2, features=32, depth=4)
        counts = [sum(p.numel() for p in m.parameters()) for m in (small, default_3d, default_2d)]
        summary = (MODELS.get(name).__doc__ or "").strip().split("\n")[0]
        rows.append(
            f"| `{name}` | {_cell(summary)} | {counts[0]:,} | {counter.get_total_flops() / 1e9:.1f} "
            f"| {counts[1]:,} | {counts[2]:,} |"
        )
    return "\n".join(rows) + "\n"


def generators() -> dict[str, Callable[[], str]]:
    from medseg3d.training.config import describe

    result: dict[str, Callable[[], str]] = {
        "configuration": lambda: describe().rstrip() + "\n",
        "commands": commands_table,
        "architectures": architectures_table,
    }
    for name, parser in subcommand_parsers().items():
        result[f"command:{name}"] = lambda parser=parser: options_table(parser)
    return result


def render(text: str, makers: dict[str, Callable[[], str]]) -> str:
    """``text`` with every generated block replaced by what the code says now."""

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in makers:
            raise KeyError(f"unknown generated block {name!r}; known: {sorted(makers)}")
        return match.group(1) + makers[name]() + match.group(4)

    return MARKER.sub(replace, text)


def generated_pages() -> list[Path]:
    return [DOCS / "configuration.md", DOCS / "commands.md", DOCS / "architectures.md"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only report pages out of date")
    args = parser.parse_args(argv)
    makers = generators()
    stale = []
    for page in generated_pages():
        text = page.read_text(encoding="utf-8")
        fresh = render(text, makers)
        if fresh != text:
            stale.append(page)
            if not args.check:
                page.write_text(fresh, encoding="utf-8")
    for page in stale:
        print(f"{page.relative_to(REPO)}: {'out of date' if args.check else 'regenerated'}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
