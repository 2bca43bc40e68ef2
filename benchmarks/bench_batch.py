"""Benchmark ``medseg3d batch``: cases per minute and how long the model waits for I/O.

    .venv/bin/python benchmarks/bench_batch.py [--cases 20] [--size 48 48 32] [--threads 2]

Same run, same machine: ``--cases`` synthetic CT-like NIfTI volumes (gzip, anisotropic, oblique
spacing so every case is reoriented and resampled), a small 3D U-Net (features 8, depth 2,
untrained weights: the work is the same), patch 32^3, overlap 0.5, on the CPU. Compared:

* ``sequential``: ``Predictor.predict`` + ``save_volume`` per case, one after the other (what a
  shell loop over ``medseg3d predict`` does, minus the process start and model load per case);
* ``batch, 1 worker`` / ``batch, 2 workers``: the local backend (reader threads ahead of the
  model, a background writer), and ``batch, 2 processes`` (``worker_type="process"``).

For each: cases per minute (wall time, model load excluded) and the model's idle share (time the
inference thread waited for a prepared case or a free writer, over its total time; for the
sequential loop, the time outside inference over the wall time). Prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch


def make_cases(folder: Path, count: int, size: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    grids = np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in size], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    for index in range(count):
        image = np.where(radius < 0.8, 40.0, -1000.0) + np.where(radius < 0.3, 60.0, 0.0)
        image = (image + rng.normal(0, 20, size)).astype(np.float32)
        affine = np.diag([-0.8, -0.8 - 0.01 * index, 2.5, 1.0])
        nib.save(nib.Nifti1Image(image, affine), str(folder / f"case{index:03d}.nii.gz"))


def make_model(folder: Path) -> Path:
    from medseg3d.inference.model_folder import save_model_folder
    from medseg3d.nn import build_model

    torch.manual_seed(0)
    options = {"features": 8, "depth": 2}
    labels = {"background": 0, "body": 1, "organ": 2}
    plan = {
        "spatial_dims": 3,
        "target_spacing": [1.0, 1.0, 2.0],
        "normalization": [{"scheme": "ct", "clip": [-1000.0, 400.0], "mean": 0.0, "std": 300.0}],
        "patch_size": [32, 32, 32],
        "labels": labels,
        "num_channels": 1,
        "channel_names": ["CT"],
        "orientation": "RAS",
    }
    return save_model_folder(
        folder,
        model=build_model("unet", 3, 1, 3, **options),
        model_spec={
            "name": "unet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 3,
            "options": options,
        },
        labels=labels,
        plan=plan,
        inference={"patch_size": [32, 32, 32], "overlap": 0.5},
        config={},
    )


def sequential(model_dir: Path, cases: Path, out: Path) -> dict:
    from medseg3d.inference.predictor import Predictor
    from medseg3d.io import save_volume

    predictor = Predictor(model_dir, device="cpu")
    start = time.perf_counter()
    paths = sorted(cases.glob("*.nii.gz"))
    inference = 0.0
    for path in paths:
        result = predictor.predict_case(path)
        inference += result.seconds["inference"]
        save_volume(result.labels, out / path.name, is_label=True)
    seconds = time.perf_counter() - start
    idle = 1.0 - inference / seconds  # the model waits while each case is read and written
    return {"seconds": seconds, "per_minute": 60 * len(paths) / seconds, "idle": idle}


def batch(model_dir: Path, cases: Path, out: Path, workers: int, worker_type: str) -> dict:
    from medseg3d.batch import BatchReport, collect_cases, run_local
    from medseg3d.batch.engine import CaseEngine

    engine = CaseEngine(model_dir, device="cpu")
    collected = collect_cases(cases, out_dir=out, channels=1)
    report = BatchReport(out, case_ids=[c.case_id for c in collected], labels=engine.label_names)
    summary = run_local(
        engine, collected, out, report, workers=workers, worker_type=worker_type, overwrite=True
    )
    assert summary.counts["done"] == len(collected), summary.counts
    return {
        "seconds": summary.seconds,
        "per_minute": summary.cases_per_minute,
        "idle": summary.idle_share,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--size", type=int, nargs=3, default=[48, 48, 32])
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the model")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        cases = root / "cases"
        cases.mkdir()
        make_cases(cases, args.cases, tuple(args.size))
        model_dir = make_model(root / "model")
        runs = [
            ("sequential (Predictor loop)", lambda out: sequential(model_dir, cases, out)),
            ("batch, 1 worker thread", lambda out: batch(model_dir, cases, out, 1, "thread")),
            ("batch, 2 worker threads", lambda out: batch(model_dir, cases, out, 2, "thread")),
            ("batch, 2 worker processes", lambda out: batch(model_dir, cases, out, 2, "process")),
        ]
        size = "x".join(map(str, args.size))
        print(
            f"{args.cases} cases of {size} voxels, unet features 8 depth 2, patch 32^3, "
            f"overlap 0.5, CPU, torch threads {args.threads}\n"
        )
        print("| run | wall s | cases/min | model idle share |")
        print("|---|---:|---:|---:|")
        for name, function in runs:
            out = root / name.replace(" ", "_").replace(",", "")
            out.mkdir()
            result = function(out)
            idle = "n/a" if result["idle"] is None else f"{100 * result['idle']:.1f} %"
            print(
                f"| {name} | {result['seconds']:.1f} | {result['per_minute']:.1f} | {idle} |",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
