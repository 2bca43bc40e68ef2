"""Segmentation metrics in physical units: Dice, IoU, HD95 and ASD in mm, volumes in mL.

numpy / scipy only (the torch helpers :func:`dice_per_class` and :func:`confusion_counts` import
torch when first used). Surface distance definition and empty-mask policy: docs/metrics.md and
:mod:`medseg3d.metrics.surface` / :mod:`medseg3d.metrics.evaluate`.
"""

from __future__ import annotations

from typing import Any

from medseg3d.metrics.evaluate import METRICS, STATISTICS, aggregate, evaluate_case
from medseg3d.metrics.overlap import dice, iou, overlap_counts, volume_ml, voxel_volume_ml
from medseg3d.metrics.pairing import check_same_grid, match_cases
from medseg3d.metrics.surface import (
    average_surface_distance,
    hausdorff_distance,
    surface,
    surface_distances,
)

_TORCH = ("confusion_counts", "dice_from_counts", "dice_per_class")

__all__ = [
    "METRICS",
    "STATISTICS",
    "aggregate",
    "average_surface_distance",
    "check_same_grid",
    "dice",
    "evaluate_case",
    "hausdorff_distance",
    "iou",
    "match_cases",
    "overlap_counts",
    "surface",
    "surface_distances",
    "volume_ml",
    "voxel_volume_ml",
    *_TORCH,
]


def __getattr__(name: str) -> Any:
    if name in _TORCH:
        from medseg3d.metrics import tensor

        return getattr(tensor, name)
    raise AttributeError(f"module 'medseg3d.metrics' has no attribute {name!r}")
