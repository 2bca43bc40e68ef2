"""``medseg3d demo``: train, segment and evaluate on the embedded sample data in a few minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "run the whole toolkit on the sample data: train, segment a held-out scan, evaluate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("demo_output"), help="output folder (default: demo_output)"
    )
    parser.add_argument("--data", type=Path, help="dataset folder (default: the sample CT dataset)")
    parser.add_argument("--iterations", type=int, help="training iterations (default: 300)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from medseg3d.demo import run_demo

    result = run_demo(
        args.out,
        data_dir=args.data,
        iterations=args.iterations,
        device=args.device,
        progress=not args.no_progress,
    )
    summary = result.summary
    print(
        f"\nmedseg3d demo: segmented {summary['case']} in {summary['seconds']['total']:.0f} s on {summary['device']}"
    )
    for name, scores in summary["labels"].items():
        hd95 = "n/a" if scores["hd95"] is None else f"{scores['hd95']:.1f} mm"
        print(
            f"  {name:<12} Dice {scores['dice']:.3f}   HD95 {hd95:<10} volume {scores['volume_pred_ml']:.1f} mL (truth {scores['volume_gt_ml']:.1f} mL)"
        )
    print(f"  mean Dice {result.mean_dice:.3f}")
    print(f"mask:    {result.mask}")
    print(f"preview: {result.preview}")
    print(f"metrics: {result.metrics}")
    print(
        f"model:   {summary['model_dir']}   (try: medseg3d predict -i IMAGE -o OUT -m {summary['model_dir']})"
    )
    return 0
