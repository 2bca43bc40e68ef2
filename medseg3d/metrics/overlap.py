"""Overlap and volume of binary masks (numpy): Dice, IoU, volume in mL.

Empty masks, consistently everywhere in :mod:`medseg3d.metrics`: both empty -> Dice = IoU = 1
(nothing to find, nothing found); exactly one empty -> 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg3d.errors import ShapeError


def overlap_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[int, int, int]:
    """``(intersection, |pred|, |gt|)`` in voxels for two boolean masks of one shape."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ShapeError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    return int(np.count_nonzero(pred & gt)), int(np.count_nonzero(pred)), int(np.count_nonzero(gt))


def dice_from_counts(intersection: int, pred: int, gt: int) -> float:
    """``2 |P & G| / (|P| + |G|)``; 1.0 when both masks are empty."""
    total = pred + gt
    return 1.0 if total == 0 else 2.0 * intersection / total


def iou_from_counts(intersection: int, pred: int, gt: int) -> float:
    """``|P & G| / |P | G|``; 1.0 when both masks are empty."""
    union = pred + gt - intersection
    return 1.0 if union == 0 else intersection / union


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two boolean masks (1.0 when both are empty)."""
    return dice_from_counts(*overlap_counts(pred, gt))


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union (Jaccard) of two boolean masks (1.0 when both are empty)."""
    return iou_from_counts(*overlap_counts(pred, gt))


def voxel_volume_ml(spacing: Sequence[float]) -> float:
    """Volume of one voxel in mL: the product of the spacing in mm, / 1000 (1 mL = 1000 mm^3)."""
    return float(np.prod(np.asarray(spacing, dtype=float))) / 1000.0


def volume_ml(mask: np.ndarray, spacing: Sequence[float]) -> float:
    """Volume of a boolean mask in mL."""
    return int(np.count_nonzero(mask)) * voxel_volume_ml(spacing)
