"""Train a U-Net on a Medical Segmentation Decathlon folder, then score the held-out cases.

    python examples/train_decathlon.py --data sample_data/ct_dataset --out runs/example_train
    python examples/train_decathlon.py --data Task03_Liver --out runs/liver --iterations 25000 \
        --features 32 --patch-size 128 128 128 --device cuda

The folder needs ``dataset.json``, ``imagesTr/`` and ``labelsTr/`` (``medseg3d train`` takes the
same folders). Everything the run writes is under ``--out``; the model folder ``--out/model`` is
what ``medseg3d predict -m`` and the other examples take. Cases in ``imagesTs/`` that have a
label in ``labelsTs/`` are segmented and scored (Dice per label) at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from medseg3d.inference.predictor import Predictor
from medseg3d.io import load_volume
from medseg3d.metrics import evaluate_case
from medseg3d.training.config import build_config
from medseg3d.training.run import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("sample_data/ct_dataset"))
    parser.add_argument("--out", type=Path, default=Path("runs/example_train"))
    parser.add_argument("--model", default="unet", help="architecture (`medseg3d models`)")
    parser.add_argument("--iterations", type=int, default=200, help="optimizer steps")
    parser.add_argument("--features", type=int, default=16, help="first-level width")
    parser.add_argument("--depth", type=int, default=3, help="number of down-samplings")
    parser.add_argument("--patch-size", type=int, nargs="+", default=[32], help="voxels")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--val-cases", type=int, default=0,
                        help="validate on at most this many cases (0: all)")  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args()

    patch = args.patch_size[0] if len(args.patch_size) == 1 else args.patch_size
    config = build_config(
        overrides=[
            f"model.name={args.model}",
            f"model.features={args.features}",
            f"model.depth={args.depth}",
            f"data.patch_size={json.dumps(patch)}",
            f"data.batch_size={args.batch_size}",
            "data.num_workers=0",
            "data.num_folds=1",  # train on every case; the held-out cases are imagesTs/
            f"training.iterations={args.iterations}",
            f"training.device={args.device}",
            f"validation.max_cases={args.val_cases}",
        ]
    )
    start = time.perf_counter()
    result = train(args.data, args.out, config, progress=False)
    print(f"trained {args.model} for {result.iterations} iterations "
          f"in {time.perf_counter() - start:.1f} s -> {result.model_dir}")  # fmt: skip

    predictor = Predictor(result.model_dir, device=args.device)
    labels = {name: value for name, value in predictor.labels.items() if value != 0}
    for image in sorted((args.data / "imagesTs").glob("*.nii*")):
        truth = args.data / "labelsTs" / image.name
        if not truth.is_file():
            continue
        prediction = predictor.predict(image)
        scores = evaluate_case(prediction, load_volume(truth), labels)
        dice = ", ".join(f"{name} {scores[name]['dice']:.3f}" for name in labels)
        print(f"{image.name}: Dice {dice}")


if __name__ == "__main__":
    main()
