"""Benchmark every medseg3d model in 3D against MONAI's BasicUNet, in one run.

For each network at one configuration (default: features 16, depth 4, input 1x1x96^3, 2 classes):
parameters, GFLOPs per forward pass (``torch.utils.flop_counter``, counted on the meta device),
forward time (eval, no grad) and forward+backward time (train mode, sum of logits), each the median
of ``--repeats`` runs after one warm-up at a small size. Ratios are relative to
``monai.networks.nets.BasicUNet`` with the same widths ``(f, 2f, 4f, 8f, 16f, f)``.

    python benchmarks/bench_models.py                       # a few minutes on 2 CPU cores
    python benchmarks/bench_models.py --size 64 --models unet unetpp
    python benchmarks/bench_models.py --device cuda --repeats 5
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from monai.networks.nets import BasicUNet
from torch.utils.flop_counter import FlopCounterMode

from medseg3d.nn import MODELS, build_model

REFERENCE = "monai BasicUNet"


def make(name: str, features: int, depth: int) -> torch.nn.Module:
    if name == REFERENCE:
        if depth != 4:
            raise SystemExit("BasicUNet has depth 4 only; use --depth 4")
        f = features
        return BasicUNet(3, 1, 2, features=(f, 2 * f, 4 * f, 8 * f, 16 * f, f))
    return build_model(name, 3, 1, 2, features=features, depth=depth)


def gflops(name: str, features: int, depth: int, size: int) -> float:
    with torch.device("meta"):
        model = make(name, features, depth).eval()
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, 1, size, size, size))
    return counter.get_total_flops() / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, args: argparse.Namespace, device: torch.device) -> dict:
    model = make(name, args.features, args.depth).to(device)
    params = sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 1, *([args.size] * 3), device=device)
    warm = torch.randn(1, 1, *([2**args.depth * 2] * 3), device=device)

    def forward(inputs=x):
        with torch.no_grad():
            model.eval()(inputs)

    def forward_backward(inputs=x):
        model.train().zero_grad(set_to_none=True)
        model(inputs).sum().backward()

    forward(warm)
    forward_backward(warm)
    return {
        "name": name,
        "params": params,
        "gflops": gflops(name, args.features, args.depth, args.size),
        "forward": timed(forward, device, args.repeats),
        "train": timed(forward_backward, device, args.repeats),
    }


def table(rows: list[dict], reference: dict) -> str:
    lines = [
        "| model | params (M) | GFLOPs/fwd | fwd (s) | fwd+bwd (s) | params x | GFLOPs x | fwd x | fwd+bwd x |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratios = [row[key] / reference[key] for key in ("params", "gflops", "forward", "train")]
        lines.append(
            f"| {row['name']} | {row['params'] / 1e6:.2f} | {row['gflops']:.1f} | "
            f"{row['forward']:.2f} | {row['train']:.2f} | "
            + " | ".join(f"{r:.2f}" for r in ratios)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS.names())
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--size", type=int, default=96, help="cubic input size (voxels)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    print(
        f"# 3D, 1x1x{args.size}^3, features {args.features}, depth {args.depth}, 2 classes; "
        f"device {device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads), torch {torch.__version__}, repeats {args.repeats}",
        flush=True,
    )
    rows = []
    for name in [REFERENCE, *args.models]:
        rows.append(measure(name, args, device))
        print(f"  measured {name}: {rows[-1]}", flush=True)
    print(table(rows, rows[0]))


if __name__ == "__main__":
    main()
