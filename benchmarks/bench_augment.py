"""Benchmark: our elastic + affine deformation vs MONAI Rand3DElasticd vs TorchIO, and the pipeline.

    .venv/bin/python benchmarks/bench_augment.py [--size 128] [--repeats 5] [--threads 1]

Same run, same machine: a 1 x size^3 float32 image with its uint8 label, deformed by
* medseg3d ``RandElasticDeformd``: elastic (7 control points, <= 7.5 voxels) + rotation (+-0.3 rad
  per axis) + zoom (0.85-1.15), one resampling, prob 1;
* MONAI ``Rand3DElasticd``: prob 1, the same rotation and zoom, sigma 5-7 and a magnitude chosen so
  the RMS displacement matches ours (measured and printed);
* TorchIO ``RandomElasticDeformation``: 7 control points, 7.5 voxels (elastic only, no rotation).
Then the whole ``build_training_transforms`` pipeline on 96^3 patches (patches/s for one worker),
and on CUDA (when present) a batch of 2 x 1 x size^3. Prints a Markdown table; times are medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

ROTATE = 0.3
ZOOM = (0.85, 1.15)


def median_time(function, repeats: int, sync=lambda: None) -> float:
    function()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def test_volume(size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(-1, 1, size, dtype=np.float32)] * 3, indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids))
    image = (np.cos(6 * radius) + 0.1 * rng.standard_normal(radius.shape)).astype(np.float32)
    label = ((radius < 0.5).astype(np.uint8) + (radius < 0.25)).astype(np.uint8)
    return {"image": image[None], "label": label[None]}


def ramp_rms(transform, size: int) -> float:
    """RMS displacement along axis 0 (voxels) measured on a coordinate ramp, in the interior."""
    ramp = np.broadcast_to(np.arange(size, dtype=np.float32)[:, None, None], (size,) * 3)[
        None
    ].copy()
    values = []
    for _ in range(3):
        out = transform({"image": torch.from_numpy(ramp), "label": torch.zeros(1, *(size,) * 3)})
        moved = np.asarray(out["image"])[0] - ramp[0]
        inner = (slice(size // 4, -size // 4),) * 3
        values.append(np.sqrt(np.mean(moved[inner] ** 2)))
    return float(np.mean(values))


def build_ours(size: int, elastic: bool = True, rotate: bool = True):
    from medseg3d.transforms import RandElasticDeformd

    return RandElasticDeformd(
        ["image", "label"],
        prob=1.0,
        spatial_dims=3,
        mode=["linear", "nearest"],
        num_control_points=7,
        max_displacement=7.5 if elastic else 0.0,
        rotate_range=ROTATE if rotate else 0.0,
        scale_range=ZOOM if rotate else None,
    )


def build_monai(size: int, magnitude: tuple[float, float], device=None, rotate: bool = True):
    from monai.transforms import Rand3DElasticd

    return Rand3DElasticd(
        ["image", "label"],
        sigma_range=(5, 7),
        magnitude_range=magnitude,
        prob=1.0,
        rotate_range=(ROTATE,) * 3 if rotate else None,
        scale_range=(ZOOM[1] - 1,) * 3 if rotate else None,
        mode=("bilinear", "nearest"),
        padding_mode="zeros",
        device=device,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 = one data-loader worker)"
    )
    parser.add_argument("--patch", type=int, default=96)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    size = args.size
    data = test_volume(size)
    tensors = {key: torch.from_numpy(value) for key, value in data.items()}

    ours = build_ours(size)
    ours.set_random_state(0)
    probe_ours = build_ours(size, rotate=False)
    probe_ours.set_random_state(0)
    ours_rms = ramp_rms(probe_ours, size)
    probe = build_monai(size, (100, 100), rotate=False)
    probe.set_random_state(0)
    monai_magnitude = 100 * ours_rms / ramp_rms(probe, size)
    magnitude = (0.8 * monai_magnitude, 1.2 * monai_magnitude)
    monai = build_monai(size, magnitude)
    monai.set_random_state(0)

    rows = []
    t_ours = median_time(lambda: ours(tensors), args.repeats)
    rows.append(("medseg3d RandElasticDeformd (elastic+rotation+zoom)", t_ours))
    t_monai = median_time(lambda: monai(tensors), args.repeats)
    rows.append(
        (
            f"MONAI Rand3DElasticd (magnitude {magnitude[0]:.0f}-{magnitude[1]:.0f}, rotation+zoom)",
            t_monai,
        )
    )
    try:
        import torchio as tio

        subject = tio.Subject(
            image=tio.ScalarImage(tensor=tensors["image"]),
            label=tio.LabelMap(tensor=tensors["label"]),
        )
        elastic = tio.RandomElasticDeformation(num_control_points=7, max_displacement=7.5)
        t_tio = median_time(lambda: elastic(subject), args.repeats)
        rows.append(("TorchIO RandomElasticDeformation (elastic only)", t_tio))
    except ImportError:
        t_tio = None

    print(
        f"## Elastic deformation, 1x{size}^3 float32 + uint8 label, {args.threads} torch thread(s)\n"
    )
    print(
        f"RMS displacement (axis 0, interior): ours {ours_rms:.2f} voxels; MONAI magnitude scaled to match\n"
    )
    print("| transform | median s / sample | ours is faster by |")
    print("|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} | {seconds / t_ours:.1f}x |")

    from medseg3d.transforms import build_training_transforms

    patch = (args.patch,) * 3
    pipeline = build_training_transforms(3, patch, seed=0)
    volume = test_volume(int(args.patch * 1.6), seed=1)
    count = max(3, args.repeats * 2)
    start = time.perf_counter()
    for _ in range(count):
        pipeline(volume)
    per_second = count / (time.perf_counter() - start)
    print(
        f"\n## Training pipeline (nnU-Net defaults + elastic p 0.2), {args.patch}^3 patches from a {int(args.patch * 1.6)}^3 volume\n"
    )
    print(f"{per_second:.2f} patches/s per worker ({args.threads} thread(s), {count} patches)")

    if torch.cuda.is_available():
        device = torch.device("cuda")
        batch = {
            key: value[None].repeat(2, 1, 1, 1, 1).to(device) for key, value in tensors.items()
        }
        sync = torch.cuda.synchronize
        t_gpu = median_time(lambda: ours(batch), args.repeats, sync)
        monai_gpu = build_monai(size, magnitude, device=device)
        single = {key: value.to(device) for key, value in tensors.items()}
        t_monai_gpu = median_time(
            lambda: (monai_gpu(single), monai_gpu(single)), args.repeats, sync
        )
        print(f"\n## CUDA ({torch.cuda.get_device_name()}), batch 2x1x{size}^3\n")
        print(f"| medseg3d (one batched call) | {t_gpu * 1000:.1f} ms |")
        print(f"| MONAI Rand3DElasticd (2 calls) | {t_monai_gpu * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
