"""Sliding-window inference: medseg3d vs MONAI, wall time and peak memory, each in its own process.

Cases (defaults are the ones in docs/benchmarks/inference.md):

* ``unet``: a 3D U-Net from ``medseg3d.nn.build_model`` (a small conv net if the registry is not
  importable) on a ``1x1x256x256x160`` volume, patch 96^3, overlap 0.5, Gaussian blending, same
  batch size; ours returns logits like MONAI.
* ``large``: 20 classes on a ``1x1x512x512x256`` volume with a light network; ours in label-only
  mode vs MONAI's ``sliding_window_inference`` followed by ``argmax`` (what a user of MONAI does
  to get labels).

Every method runs in a fresh subprocess; peak memory is that process's ``ru_maxrss`` (resident
set high-water mark), reported in total and above the baseline measured just before inference
(interpreter, libraries, network and input). Also reported: window counts, the network's
GFLOP/s achieved during inference, and this machine's float32 matmul GFLOP/s.

    python benchmarks/bench_inference.py                      # both cases, spec sizes
    python benchmarks/bench_inference.py --case unet --shape 192 192 96   # a quicker run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch import nn

CASES = {
    "unet": dict(shape=(256, 256, 160), patch=96, classes=2, network="unet", batch_size=2),
    "large": dict(shape=(512, 512, 256), patch=96, classes=20, network="light", batch_size=2),
}


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def cpu_seconds() -> float:
    """User + system CPU time of this process: steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_network(kind: str, classes: int, features: int) -> tuple[nn.Module, str]:
    from medseg3d.nn import layers

    if kind == "unet":
        try:
            from medseg3d.nn import build_model

            model = build_model("unet", 3, 1, classes, features=features, depth=3)
            return model.eval(), f"medseg3d.nn.build_model('unet', features={features}, depth=3)"
        except Exception as error:  # registry not there yet: a small conv net instead
            print(f"build_model failed ({error}); using a small conv net", file=sys.stderr)
    model = nn.Sequential(
        layers.conv(3, 1, 8, 3), nn.ReLU(inplace=True), layers.conv(3, 8, classes, 1)
    )
    return model.eval(), "light: conv3x3x3(1->8), ReLU, conv1x1x1(8->classes)"


def network_flops(model: nn.Module, patch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, patch, patch, patch))
    return float(counter.get_total_flops())


def worker(args) -> dict:
    """One method, one process: build, measure the baseline, run, measure the peak."""
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    case = CASES[args.case]
    model, description = build_network(case["network"], case["classes"], args.features)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 1, *args.shape, generator=generator)
    patch, batch = args.patch, args.batch_size
    baseline = peak_rss_bytes()
    cpu_start = cpu_seconds()
    start = time.perf_counter()
    with torch.no_grad():
        if args.method == "monai":
            from monai.inferers import sliding_window_inference as monai_swi

            result = monai_swi(image, (patch,) * 3, batch, model, overlap=0.5, mode="gaussian")
            if args.case == "large":
                result = result.argmax(1, keepdim=True).to(torch.uint8)
            windows = None
        else:
            from medseg3d.inference import sliding_window_inference

            output = "labels" if args.case == "large" else "logits"
            extra = {} if args.stitch_threads is None else {"stitch_threads": args.stitch_threads}
            if args.stitch_threads == 0:  # 0: all of torch's threads
                extra = {"stitch_threads": None}
            result, stats = sliding_window_inference(
                image,
                model,
                patch,
                overlap=0.5,
                batch_size=batch,
                output=output,
                return_stats=True,
                **extra,
            )
            windows = stats.windows
    seconds = time.perf_counter() - start
    cpu = cpu_seconds() - cpu_start
    from monai.data.utils import dense_patch_slices
    from monai.inferers.utils import _get_scan_interval

    interval = _get_scan_interval(args.shape, (patch,) * 3, 3, (0.5,) * 3)
    monai_windows = len(dense_patch_slices(args.shape, (patch,) * 3, interval))
    flops = network_flops(model, patch) * monai_windows
    return dict(
        method=args.method,
        case=args.case,
        network=description,
        shape=list(args.shape),
        patch=patch,
        batch_size=batch,
        seconds=seconds,
        cpu_seconds=cpu,
        peak_bytes=peak_rss_bytes(),
        baseline_bytes=baseline,
        windows=windows if windows is not None else monai_windows,
        gflops_per_second=flops / seconds / 1e9,
        output_dtype=str(result.dtype),
    )


def matmul_gflops(threads: int, size: int = 2048, repeats: int = 5) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def run_in_subprocess(args, case: str, method: str) -> dict:
    command = [
        sys.executable,
        __file__,
        "--worker",
        "--case",
        case,
        "--method",
        method,
        "--threads",
        str(args.threads),
        "--features",
        str(args.features),
    ]
    for flag in ("shape", "patch", "batch_size", "stitch_threads"):
        value = getattr(args, flag)
        if value is not None:
            command += [
                f"--{flag.replace('_', '-')}",
                *map(str, value if flag == "shape" else [value]),
            ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{case}/{method} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", choices=[*CASES, "all"], default="all")
    parser.add_argument("--shape", type=int, nargs=3, help="spatial shape (default: the case's)")
    parser.add_argument("--patch", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--features", type=int, default=8, help="U-Net base features")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--stitch-threads",
        type=int,
        help="ours: threads while stitching (default: the library's, 1; 0 = all of torch's)",
    )
    parser.add_argument("--method", choices=["ours", "monai"], default="ours")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        case = CASES[args.case]
        args.shape = tuple(args.shape or case["shape"])
        args.patch = args.patch or case["patch"]
        args.batch_size = args.batch_size or case["batch_size"]
        print(json.dumps(worker(args)))
        return

    print(f"torch {torch.__version__}, {args.threads} threads, CPU count {os.cpu_count()}")
    print(f"matmul float32 2048^3: {matmul_gflops(args.threads):.1f} GFLOP/s")
    for case in CASES if args.case == "all" else [args.case]:
        results = {method: run_in_subprocess(args, case, method) for method in ("ours", "monai")}
        ours, monai = results["ours"], results["monai"]
        print(
            f"\n## {case}: {ours['network']}, shape {ours['shape']}, patch {ours['patch']}, batch {ours['batch_size']}"
        )
        print(
            "| method | windows | wall s | CPU s | GFLOP/s | peak RSS MB | above baseline MB | output |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for name, r in results.items():
            print(
                f"| {name} | {r['windows']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} "
                f"| {r['gflops_per_second']:.1f} "
                f"| {r['peak_bytes'] / 2**20:.0f} | {(r['peak_bytes'] - r['baseline_bytes']) / 2**20:.0f} "
                f"| {r['output_dtype']} |"
            )
        print(
            f"time ratio ours/MONAI {ours['seconds'] / monai['seconds']:.2f} (CPU time "
            f"{ours['cpu_seconds'] / monai['cpu_seconds']:.2f}); peak memory ratio "
            f"{ours['peak_bytes'] / monai['peak_bytes']:.2f} (above baseline "
            f"{(ours['peak_bytes'] - ours['baseline_bytes']) / max(1, monai['peak_bytes'] - monai['baseline_bytes']):.2f})"
        )


if __name__ == "__main__":
    main()
