"""Train several architectures on the same data with the same budget and compare them.

    python examples/compare_architectures.py --data sample_data/ct_dataset \
        --models unet attention_unet residual_unet unetpp --iterations 300

For each model: parameters, training time, and Dice per label on the held-out cases of
``imagesTs/``+``labelsTs/``. The preprocessed cache is shared, so only the first model pays
for preprocessing. Printed as a Markdown table. docs/architectures.md describes the models.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from medseg3d.inference.predictor import Predictor
from medseg3d.io import load_volume
from medseg3d.metrics import evaluate_case
from medseg3d.nn import MODELS
from medseg3d.training.config import build_config
from medseg3d.training.run import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("sample_data/ct_dataset"))
    parser.add_argument("--out", type=Path, default=Path("runs/compare"))
    parser.add_argument("--models", nargs="+", default=["unet", "attention_unet", "residual_unet"],
                        choices=MODELS.names())  # fmt: skip
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--patch-size", type=int, default=32)
    parser.add_argument("--val-cases", type=int, default=0,
                        help="validate on at most this many cases (0: all)")  # fmt: skip
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    rows = []
    for name in args.models:
        config = build_config(
            overrides=[
                f"model.name={name}",
                f"model.features={args.features}",
                f"model.depth={args.depth}",
                f"data.patch_size={json.dumps(args.patch_size)}",
                "data.num_workers=0",
                "data.num_folds=1",
                f"data.cache_dir={args.out / 'cache'}",
                f"training.iterations={args.iterations}",
                f"training.device={args.device}",
                f"validation.max_cases={args.val_cases}",
            ]
        )
        start = time.perf_counter()
        result = train(args.data, args.out / name, config, progress=False)
        seconds = time.perf_counter() - start
        predictor = Predictor(result.model_dir, device=args.device)
        labels = {label: value for label, value in predictor.labels.items() if value != 0}
        scores: dict[str, list[float]] = {label: [] for label in labels}
        for image in sorted((args.data / "imagesTs").glob("*.nii*")):
            truth = args.data / "labelsTs" / image.name
            if truth.is_file():
                case = evaluate_case(predictor.predict(image), load_volume(truth), labels)
                for label in labels:
                    scores[label].append(case[label]["dice"])
        parameters = sum(p.numel() for p in predictor.loaded.model.parameters())
        dice = {label: sum(v) / len(v) if v else float("nan") for label, v in scores.items()}
        rows.append((name, parameters, seconds, dice))

    labels = list(rows[0][3]) if rows else []
    print("| model | parameters | training (s) | " + " | ".join(f"Dice {x}" for x in labels) + " |")
    print("|---|---:|---:|" + "---:|" * len(labels))
    for name, parameters, seconds, dice in rows:
        cells = " | ".join(f"{dice[label]:.3f}" for label in labels)
        print(f"| {name} | {parameters:,} | {seconds:.1f} | {cells} |")


if __name__ == "__main__":
    main()
