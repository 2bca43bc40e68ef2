"""Ensemble benchmark: time and peak memory of one model vs. ensembles, with uncertainty maps.

Each configuration runs in a fresh subprocess (so peak RSS is its own) on a synthetic oblique
CT-like scan with untrained U-Nets (the weights do not change the cost).

    .venv/bin/python benchmarks/bench_ensemble.py            # a few minutes on 2 CPU cores
    .venv/bin/python benchmarks/bench_ensemble.py --quick    # smaller scan, a smoke test

Prints a Markdown table to paste into docs/predict.md ("Ensembles and uncertainty").
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

#: name -> (model folders used, predict options)
CONFIGS = {
    "1 model, labels (label-only mode)": (["a"], {}),
    "1 model, probabilities": (["a"], {"probabilities": True}),
    "2 models (same plan)": (["a", "b"], {}),
    "3 models (same plan)": (["a", "b", "c"], {}),
    "3 models, float16 sums": (["a", "b", "c"], {"accumulate_dtype": "float16"}),
    "2 models + variance": (["a", "b"], {"uncertainty": "variance"}),
    "2 models, different spacings": (["a", "coarse"], {}),
}


def make_inputs(folder: Path, shape: tuple[int, int, int]) -> Path:
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
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    scan = save_volume(Volume(image.astype(np.float32), affine), folder / "scan.nii.gz")
    options = {"features": 4, "depth": 2}
    labels = {"background": 0, "liver": 1, "spleen": 2}
    for seed, (name, spacing) in enumerate([("a", 1.5), ("b", 1.5), ("c", 1.5), ("coarse", 2.0)]):
        torch.manual_seed(seed)
        save_model_folder(
            folder / name,
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
                "target_spacing": [spacing, spacing, 2.5],
                "normalization": [{"scheme": "ct", "clip": [-200, 300], "mean": 40, "std": 80}],
                "patch_size": [64, 64, 32],
                "labels": labels,
                "num_channels": 1,
                "channel_names": ["CT"],
                "orientation": "RAS",
            },
            inference={"patch_size": [64, 64, 32], "overlap": 0.5},
            config={},
        )
    return scan


def child(folder: Path, name: str) -> None:
    import torch

    torch.set_num_threads(2)
    from medseg3d.inference.predictor import Predictor

    models, options = CONFIGS[name]
    uncertainty = options.get("uncertainty")
    clock = time.perf_counter()
    predictor = Predictor(
        [folder / m for m in models] if len(models) > 1 else folder / models[0],
        device="cpu",
        accumulate_dtype=options.get("accumulate_dtype", "float32"),
    )
    load = time.perf_counter() - clock
    result = predictor.predict_case(
        folder / "scan.nii.gz",
        probabilities=bool(options.get("probabilities")),
        uncertainty=uncertainty,
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load": load, **result.seconds, "peak_mib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small scan (smoke test)")
    parser.add_argument("--child", nargs=2, metavar=("FOLDER", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), args.child[1])
        return
    shape = (96, 96, 24) if args.quick else (256, 256, 64)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_inputs(folder, shape)
        print(f"scan {shape} voxels at 0.8 x 0.8 x 2.5 mm; U-Net features 4, depth 2, 3 classes")
        print(
            "| configuration | load | read | preprocess | inference | restore | total | peak RSS (MiB) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name in CONFIGS:
            output = (
                subprocess.run(
                    [sys.executable, __file__, "--child", str(folder), name],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            s = json.loads(output)
            print(
                f"| {name} | {s['load']:.2f} | {s['read']:.2f} | {s['preprocess']:.2f} | "
                f"{s['inference']:.2f} | {s['restore']:.2f} | {s['total']:.2f} | "
                f"{s['peak_mib']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
