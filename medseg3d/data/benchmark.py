"""Data-pipeline benchmark: ``python -m medseg3d.data.benchmark [--size 384 --slices 160]``.

Measures, on a synthetic CT-like volume (LPS, 0.8 x 0.8 x 2.5 mm, int16):

1. ``preprocess`` (reorient RAS + CT normalisation + resampling to 1.5 mm) against MONAI's
   ``Orientation`` + ``Spacing`` + ``ScaleIntensityRange`` doing the same job;
2. ``restore_labels`` back onto the original grid (``nearest`` and ``onehot``);
3. one epoch's data cost: decoding the NIfTI and preprocessing it again, vs opening the cached
   ``.npy`` memory map; and random patches per second from :class:`PatchDataset`.

Prints a Markdown table (the median of ``--repeats`` runs). Runs in about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", type=int, default=384, help="in-plane voxels (default %(default)s)"
    )
    parser.add_argument("--slices", type=int, default=160, help="slices (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from medseg3d.data import (
        Plan,
        build_cache,
        load_cached_case,
        load_dataset,
        make_ct_like_case,
        preprocess,
        restore_labels,
        write_dataset,
    )
    from medseg3d.data.patch_dataset import PatchDataset
    from medseg3d.data.reading import read_case

    torch.set_num_threads(2)
    shape = (args.size, args.size, args.slices)
    image, label = make_ct_like_case(
        shape, (0.8, 0.8, 2.5), seed=0, orientation="LPS", noise_std=12
    )
    norm = {"scheme": "ct", "clip": [-100.0, 250.0], "mean": 100.0, "std": 40.0}
    plan = Plan(
        3,
        [1.5, 1.5, 1.5],
        [norm],
        [96, 96, 96],
        {"background": 0, "liver": 1, "kidney": 2},
        1,
        ["CT"],
    )
    rows = []

    result = preprocess(image, plan, label)
    rows.append(
        (
            "medseg3d preprocess (reorient + normalise + resample)",
            _median_time(lambda: preprocess(image, plan), args.repeats),
        )
    )
    rows.append(
        (
            "MONAI Orientation + ScaleIntensityRange + Spacing",
            _median_time(lambda: _monai(image), args.repeats),
        )
    )
    mask = result.label[0]
    for kind in ("nearest", "onehot"):
        rows.append(
            (
                f"restore_labels kind={kind}",
                _median_time(
                    lambda k=kind: restore_labels(mask, result.restore, kind=k), args.repeats
                ),
            )
        )

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_dataset(root / "ds", {"case": (image, label)}, plan.labels)
        spec = load_dataset(root / "ds")
        rows.append(
            (
                "decode NIfTI + preprocess (no cache)",
                _median_time(lambda: preprocess(*read_case(spec.cases[0])[:1], plan), args.repeats),
            )
        )
        build_cache(spec, plan, root / "cache", progress=False)
        rows.append(
            (
                "open cached case (np.load mmap) + read all",
                _median_time(
                    lambda: np.asarray(load_cached_case(root / "cache", "case").image).sum(),
                    args.repeats,
                ),
            )
        )
        dataset = PatchDataset(root / "cache", plan.patch_size, samples_per_epoch=50)
        dataset[0]
        seconds = _median_time(lambda: [dataset[i] for i in range(50)], args.repeats)
        rows.append(("50 random 96^3 patches from the cache", seconds))

    print(
        f"volume {shape} int16, {image.array.nbytes / 2**20:.0f} MiB; preprocessed {result.image.shape[1:]}"
    )
    print("| step | seconds (median) |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")
    return 0


def _monai(image) -> None:
    from monai.data import MetaTensor
    from monai.transforms import Orientation, ScaleIntensityRange, Spacing

    tensor = MetaTensor(torch_from(image.array[None].astype(np.float32)), affine=image.affine)
    tensor = Orientation(axcodes="RAS")(tensor)
    tensor = ScaleIntensityRange(-100, 250, -100 / 40 - 2.5, 250 / 40 - 2.5, clip=True)(tensor)
    Spacing(pixdim=(1.5, 1.5, 1.5))(tensor)  # MONAI's default: linear, torch backend


def torch_from(array):
    import torch

    return torch.from_numpy(np.ascontiguousarray(array))


if __name__ == "__main__":
    raise SystemExit(main())
