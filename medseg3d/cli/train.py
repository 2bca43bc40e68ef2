"""``medseg3d train``: train a network on a dataset folder and export a self-contained model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train a segmentation network on a dataset folder (MSD or nnU-Net layout)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="dataset folder with dataset.json")
    parser.add_argument(
        "--out", required=True, type=Path, help="run folder (checkpoints, logs, model/)"
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        type=Path,
        metavar="FILE.yaml",
        help="YAML config; may be given several times, later files win",
    )
    parser.add_argument("--model", help="architecture (see `medseg3d models`)")
    parser.add_argument("--iterations", type=int, help="optimizer steps in total")
    parser.add_argument(
        "--patch-size", type=int, nargs="+", metavar="N", help="training patch in voxels"
    )
    parser.add_argument("--batch-size", type=int, help="patches per iteration")
    parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--fold", type=int, help="cross-validation fold used for validation")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--workers", type=int, help="data-loading worker processes")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its last checkpoint"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="set any config key, e.g. --set optimizer.lr=3e-4 (repeatable)",
    )
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="N",
        help="stop after N iterations of this call (checkpoint written; continue with --resume)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from medseg3d.training.config import build_config, load_config_file
    from medseg3d.training.run import train

    patch = args.patch_size
    if patch is not None and len(patch) == 1:
        patch = patch[0]
    values = {
        "model.name": args.model,
        "training.iterations": args.iterations,
        "data.patch_size": patch,
        "data.batch_size": args.batch_size,
        "training.device": args.device,
        "data.fold": args.fold,
        "training.seed": args.seed,
        "data.num_workers": args.workers,
    }
    base = None
    saved = args.out / "config.yaml"
    if args.resume and saved.is_file():
        base = load_config_file(saved)  # a resumed run starts from its own config
    config = build_config(args.config, args.set, values, base=base)
    result = train(
        args.data,
        args.out,
        config,
        resume=args.resume,
        progress=not args.no_progress,
        stop_after=args.stop_after,
    )
    if result.iterations < config["training"]["iterations"]:
        print(f"stopped at iteration {result.iterations}; continue with --resume")
        return 0
    print(f"model folder: {result.model_dir}")
    if result.best_score is not None:
        print(f"best validation Dice: {result.best_score:.4f} (iteration {result.best_iteration})")
    return 0
