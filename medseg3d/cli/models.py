"""``medseg3d models``: list the model registry with parameter counts for one configuration."""

from __future__ import annotations

import argparse
import inspect
import json

import yaml

from medseg3d.errors import ConfigError

HELP = "list the available networks with their parameter counts and options"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="MODEL", help="models to show (default: all)")
    parser.add_argument("--spatial-dims", type=int, default=3, choices=(2, 3))
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--out-channels", type=int, default=2)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other build option, e.g. -o upsample=interp -o deep_supervision=true "
        "(values are read as YAML); options a model does not take are skipped for it",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _parse_options(pairs: list[str]) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option expects KEY=VALUE, got {pair!r}")
        options[key.strip()] = yaml.safe_load(value)
    return options


def run(args: argparse.Namespace) -> int:
    import torch  # imported here: `medseg3d --help` and other commands stay fast

    from medseg3d.nn import COMMON_OPTIONS, MODELS, build_model, model_options

    names = args.names or MODELS.names()
    for name in names:
        MODELS.get(name)  # unknown names: one error listing the models
    extra = _parse_options(args.option)
    known = set().union(*(model_options(name) for name in MODELS.names()))
    unknown = sorted(set(extra) - known)
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)}; models take: {', '.join(sorted(known))}"
        )
    rows = []
    for name in names:
        allowed = model_options(name)
        options = {"depth": args.depth, "features": args.features}
        options.update({k: v for k, v in extra.items() if k in allowed})
        with torch.device("meta"):  # shapes and counts only: no memory, no time
            model = build_model(
                name, args.spatial_dims, args.in_channels, args.out_channels, **options
            )
        own = {k: v for k, v in model.options.items() if k not in COMMON_OPTIONS}
        doc = inspect.getdoc(MODELS.get(name)) or ""
        rows.append(
            {
                "name": name,
                "parameters": model.num_parameters(),
                "size_divisor": model.size_divisor,
                "own_options": own,
                "description": doc.splitlines()[0].replace("``", "") if doc else "",
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    shown = ", ".join(f"{k}={v}" for k, v in {**options_header(args), **extra}.items())
    print(f"{args.spatial_dims}D, {shown}")
    width = max([len("own options"), *(len(_own(row)) for row in rows)]) + 2
    print(f"{'model':<16}{'parameters':>14}  {'own options':<{width}}description")
    for row in rows:
        print(
            f"{row['name']:<16}{row['parameters']:>14,}  {_own(row):<{width}}{row['description']}"
        )
    return 0


def _own(row: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in row["own_options"].items()) or "-"


def options_header(args: argparse.Namespace) -> dict:
    return {
        "in_channels": args.in_channels,
        "out_channels": args.out_channels,
        "depth": args.depth,
        "features": args.features,
    }
