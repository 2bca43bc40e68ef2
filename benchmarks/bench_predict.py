"""End-to-end ``Predictor`` benchmark: time per step and peak memory for one CT-sized scan.

Runs each configuration in a fresh subprocess (so peak RSS is that configuration's own) on a
synthetic oblique CT-like scan with an untrained U-Net (the weights do not change the cost).

    .venv/bin/python benchmarks/bench_predict.py            # a few minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_predict.py --quick    # smaller scan, for a smoke test

Prints a Markdown table (seconds per step, peak RSS in MiB) to paste into docs/predict.md.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "labels": [],
    "probabilities": ["probabilities"],
    "labels + largest component + fill holes": ["postprocess"],
    "labels + TTA (8 mirrors)": ["tta"],
}


def make_inputs(folder: Path, shape: tuple[int, int, int]) -> tuple[Path, Path]:
    import numpy as np
    import torch

    from medseg3d.inference.model_folder import save_model_folder
    from medseg3d.io import save_volume
    from medseg3d.io.volume import Volume
    from medseg3d.nn import build_model

    rng = np.random.default_rng(0)
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    body = (x**2 + 1.4 * y**2 < 0.8).astype(np.float32)
    organ = ((x - 0.3) ** 2 + y**2 + 0.5 * z**2 < 0.12).astype(np.float32)
    image = -1000 + body * 1040 + organ * 80 + rng.normal(0, 20, shape).astype(np.float32)
    angle = 0.2
    affine = np.eye(4)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine[:3, :3] = rotation @ np.diag([-0.8, -0.8, 2.5])
    scan = save_volume(Volume(image.astype(np.float32), affine), folder / "scan.nii.gz")

    torch.manual_seed(0)
    options = {"features": 8, "depth": 3}
    labels = {"background": 0, "liver": 1, "spleen": 2}
    model = save_model_folder(
        folder / "model",
        model=build_model("unet", 3, 1, 3, **options),
        model_spec={
            "name": "unet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 3,
            "options": options,
        },
        labels=labels,
        plan={
            "spatial_dims": 3,
            "target_spacing": [1.5, 1.5, 2.5],
            "normalization": [{"scheme": "ct", "clip": [-200.0, 300.0], "mean": 50.0, "std": 60.0}],
            "patch_size": [64, 64, 32],
            "labels": labels,
            "num_channels": 1,
            "channel_names": ["CT"],
        },
        inference={"patch_size": [64, 64, 32], "overlap": 0.5},
        config={},
    )
    return scan, model


def run_one(scan: str, model: str, flags: list[str]) -> dict:
    import torch

    from medseg3d.inference.predictor import Predictor

    torch.set_num_threads(2)
    start = time.perf_counter()
    predictor = Predictor(
        model,
        device="cpu",
        tta="tta" in flags,
        largest_component="postprocess" in flags,
        fill_holes="postprocess" in flags,
    )
    load = time.perf_counter() - start
    result = predictor.predict_case(scan, probabilities="probabilities" in flags)
    with tempfile.TemporaryDirectory() as folder:
        result.save(Path(folder) / "seg.nii.gz")
    seconds = {"load model": load, **result.seconds}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"seconds": seconds, "peak_rss_mib": peak, "shape": list(result.labels.spatial_shape)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small scan (smoke test)")
    parser.add_argument(
        "--run", nargs=3, metavar=("SCAN", "MODEL", "FLAGS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.run:
        scan, model, flags = args.run
        print(json.dumps(run_one(scan, model, [f for f in flags.split(",") if f])))
        return 0

    shape = (96, 96, 32) if args.quick else (256, 256, 96)
    with tempfile.TemporaryDirectory() as folder:
        scan, model = make_inputs(Path(folder), shape)
        rows = []
        for name, flags in CONFIGS.items():
            if "tta" in flags and not args.quick:
                continue  # 8x the inference time: measured on the quick scan only
            command = [
                sys.executable,
                __file__,
                "--run",
                str(scan),
                str(model),
                ",".join(flags) or "",
            ]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            rows.append((name, json.loads(output.strip().splitlines()[-1])))
    steps = [
        "load model",
        "read",
        "preprocess",
        "inference",
        "restore",
        "postprocess",
        "write",
        "total",
    ]
    print(
        f"scan {shape} voxels at 0.8 x 0.8 x 2.5 mm, unet features=8 depth=3, patch 64x64x32, overlap 0.5, CPU"
    )
    print("| configuration | " + " | ".join(steps) + " | peak RSS (MiB) |")
    print("|---" * (len(steps) + 2) + "|")
    for name, row in rows:
        seconds = row["seconds"]
        cells = [f"{seconds.get(step, 0.0):.2f}" for step in steps]
        print(f"| {name} | " + " | ".join(cells) + f" | {row['peak_rss_mib']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
