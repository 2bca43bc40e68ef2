"""Benchmark: evaluate_case (Dice + HD95 + ASD + volumes) vs MONAI's metrics on one case.

Run: ``.venv/bin/python tests/metrics/bench_metrics.py`` (a minute or two). Not a test.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from monai.metrics import DiceMetric, compute_average_surface_distance, compute_hausdorff_distance
from scipy import ndimage

from medseg3d.metrics import evaluate_case

SHAPE = (160, 160, 96)
SPACING = (0.8, 0.8, 2.5)
LABELS = {"a": 1, "b": 2, "c": 3}


def _label_map(rng: np.random.Generator) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.random(SHAPE, dtype=np.float32), 6)
    return np.digitize(field, np.quantile(field, [0.6, 0.85, 0.97])).astype(np.uint8)


def main() -> None:
    rng = np.random.default_rng(0)
    gt = _label_map(rng)
    pred = np.roll(gt, (2, -1, 1), axis=(0, 1, 2))
    start = time.perf_counter()
    ours = evaluate_case(pred, gt, LABELS, SPACING)
    ours_s = time.perf_counter() - start

    start = time.perf_counter()

    def onehot(labels: np.ndarray) -> torch.Tensor:
        return torch.nn.functional.one_hot(torch.from_numpy(labels).long(), 4).movedim(-1, 0)[None]

    y_pred, y = onehot(pred), onehot(gt)
    dice = DiceMetric(include_background=False, reduction="none")(y_pred, y)
    hd95 = compute_hausdorff_distance(y_pred, y, percentile=95, spacing=SPACING)
    asd = compute_average_surface_distance(y_pred, y, symmetric=True, spacing=SPACING)
    monai_s = time.perf_counter() - start
    print(f"volume {SHAPE}, spacing {SPACING}, {len(LABELS)} labels")
    print(f"medseg3d evaluate_case {ours_s:6.2f} s   MONAI Dice+HD95+ASD {monai_s:6.2f} s")
    for index, name in enumerate(LABELS):
        print(
            f"  {name}: dice {ours[name]['dice']:.5f}/{float(dice[0, index]):.5f} "
            f"hd95 {ours[name]['hd95']:.4f}/{float(hd95[0, index]):.4f} "
            f"asd {ours[name]['asd']:.4f}/{float(asd[0, index]):.4f}"
        )


if __name__ == "__main__":
    main()
