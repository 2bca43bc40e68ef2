"""Benchmark: forward + backward time of our losses vs MONAI's (CPU, float32).

Run: ``.venv/bin/python tests/losses/bench_losses.py`` (a few minutes at most). Not a test.
"""

from __future__ import annotations

import time

import monai.losses as ml
import torch

from medseg3d.losses import build_loss

SHAPE = (2, 4, 64, 64, 64)
REPEATS = 8

CASES = {
    "dice": (lambda: build_loss("dice"), lambda: ml.DiceLoss(softmax=True, to_onehot_y=True)),
    "dice_ce": (
        lambda: build_loss("dice_ce"),
        lambda: ml.DiceCELoss(softmax=True, to_onehot_y=True),
    ),
    "focal": (
        lambda: build_loss("focal"),
        lambda: ml.FocalLoss(use_softmax=True, to_onehot_y=True),
    ),
    "generalized_dice": (
        lambda: build_loss("generalized_dice"),
        lambda: ml.GeneralizedDiceLoss(softmax=True, to_onehot_y=True),
    ),
}


def _once(loss, logits, labels) -> float:
    x = logits.clone().requires_grad_(True)
    start = time.perf_counter()
    loss(x, labels).backward()
    return time.perf_counter() - start


def _compare(ours, theirs, logits, labels) -> tuple[float, float]:
    """Best of REPEATS, alternating the two so both see the same machine load."""
    best_ours = best_theirs = float("inf")
    for _ in range(REPEATS):
        best_ours = min(best_ours, _once(ours, logits, labels))
        best_theirs = min(best_theirs, _once(theirs, logits, labels))
    return best_ours, best_theirs


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # steadier on a shared machine
    logits = torch.randn(*SHAPE)
    labels = torch.randint(0, SHAPE[1], (SHAPE[0], 1, *SHAPE[2:]))
    print(
        f"shape {SHAPE}, float32, {torch.get_num_threads()} threads, best of {REPEATS} (forward+backward)"
    )
    for name, (ours, theirs) in CASES.items():
        a, b = _compare(ours(), theirs(), logits, labels)
        print(
            f"{name:18s} medseg3d {a * 1e3:8.1f} ms   MONAI {b * 1e3:8.1f} ms   ratio {b / a:4.2f}x"
        )


if __name__ == "__main__":
    main()
