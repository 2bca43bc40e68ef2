"""Per-case evaluation of label maps and aggregation over cases.

>>> result = evaluate_case(pred, gt, {"liver": 1, "tumour": 2}, spacing=(0.8, 0.8, 2.5))
>>> result["liver"]["dice"], result["liver"]["hd95"]          # hd95 in mm
>>> summary = aggregate([result, ...])
>>> summary["labels"]["liver"]["hd95"]["mean"], summary["labels"]["liver"]["hd95"]["n_excluded"]

Empty structures (the policy, also in docs/metrics.md). Per label and case:

=====================  ======  ======  =================  =========================
case                   Dice    IoU     HD95 / ASD         volume_rel_diff
=====================  ======  ======  =================  =========================
both empty             1.0     1.0     0.0                None (no reference volume)
ground truth empty     0.0     0.0     None (undefined)   None
prediction empty       0.0     0.0     None (undefined)   -1.0
=====================  ======  ======  =================  =========================

``None`` is never a number: :func:`aggregate` leaves it out of the statistics and reports how
many cases it left out (``n_excluded``), so no NaN or inf ever reaches a mean. Pass
``empty_distance=<mm>`` (or ``"diagonal"``, the diagonal of the image in mm) to
:func:`evaluate_case` to score undefined distances with a worst-case value instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from medseg3d.errors import ConfigError, InvalidVoxelError, ShapeError
from medseg3d.metrics.overlap import dice_from_counts, iou_from_counts, voxel_volume_ml
from medseg3d.metrics.surface import (
    average_from_distances,
    check_spacing,
    hausdorff_from_distances,
    surface_distances,
)

#: The metrics of :func:`evaluate_case` that :func:`aggregate` summarises.
METRICS = (
    "dice",
    "iou",
    "hd95",
    "asd",
    "volume_pred_ml",
    "volume_gt_ml",
    "volume_diff_ml",
    "volume_rel_diff",
)
STATISTICS = ("mean", "median", "std", "min", "max", "n", "n_excluded")
_FIND_OBJECTS_MAX_LABEL = 1 << 20


def evaluate_case(
    pred: Any,
    gt: Any,
    labels: Mapping[str, int | Sequence[int]] | Sequence[int],
    spacing: float | Sequence[float] | None = None,
    *,
    empty_distance: float | str | None = None,
) -> dict[str, dict[str, Any]]:
    """Metrics of each label of one case.

    Args:
        pred, gt: label maps of one shape (numpy arrays, CPU tensors, or ``Volume``s), spatial
            axes only, whole-number values.
        labels: ``{name: value}``; a value may be a list of values scored as one region
            (e.g. ``{"whole_tumour": [1, 2, 3]}``). A plain list of values names each by its
            value (``[1, 2]`` -> ``{"1": 1, "2": 2}``).
        spacing: mm per array axis; taken from ``pred`` when it is a ``Volume``. Required for
            plain arrays (distances and volumes are in mm and mL, never in voxels).
        empty_distance: HD95 / ASD when exactly one of the masks is empty: None (default:
            undefined, reported as None), a number in mm, or ``"diagonal"`` (image diagonal).

    Returns:
        ``{name: {"dice", "iou", "hd95" (mm), "asd" (mm, symmetric), "volume_pred_ml",
        "volume_gt_ml", "volume_diff_ml" (pred - gt), "volume_rel_diff" ((pred - gt) / gt),
        "voxels_pred", "voxels_gt"}}`` with floats, ints or None (see the module docstring).
    """
    pred_array, pred_spacing, pred_affine = _unwrap(pred, "prediction")
    gt_array, _, gt_affine = _unwrap(gt, "ground truth")
    if pred_array.shape != gt_array.shape:
        raise ShapeError(
            f"prediction {pred_array.shape} and ground truth {gt_array.shape} differ in shape; "
            "resample the prediction onto the ground truth grid first"
        )
    if (
        pred_affine is not None
        and gt_affine is not None
        and not np.allclose(pred_affine, gt_affine, atol=1e-3)
    ):
        raise ShapeError(
            "prediction and ground truth lie on different grids (affines differ); resample first"
        )
    if spacing is None:
        if pred_spacing is None:
            raise ConfigError("evaluate_case needs spacing= (mm per array axis) for plain arrays")
        spacing = pred_spacing
    spacing = check_spacing(spacing, pred_array.ndim)
    regions = _check_labels(labels)
    fallback = _empty_distance(empty_distance, pred_array.shape, spacing)
    voxel_ml = voxel_volume_ml(spacing)
    pred_boxes, gt_boxes = _Boxes(pred_array), _Boxes(gt_array)
    results = {}
    for name, values in regions.items():
        box = _union([pred_boxes.box(values), gt_boxes.box(values)])
        if box is None:
            pred_mask = gt_mask = np.zeros((1,) * pred_array.ndim, dtype=bool)
        else:
            pred_mask = np.pad(np.isin(pred_array[box], values), 1)
            gt_mask = np.pad(np.isin(gt_array[box], values), 1)
        results[name] = _label_metrics(pred_mask, gt_mask, spacing, voxel_ml, fallback)
    return results


def _label_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing, voxel_ml: float, fallback
) -> dict[str, Any]:
    intersection = int(np.count_nonzero(pred & gt))
    n_pred, n_gt = int(np.count_nonzero(pred)), int(np.count_nonzero(gt))
    if n_pred and n_gt:
        forward, backward = surface_distances(pred, gt, spacing, cropped=True)
        hd95, asd = (
            hausdorff_from_distances(forward, backward, 95.0),
            average_from_distances(forward, backward),
        )
    elif n_pred == n_gt == 0:
        hd95 = asd = 0.0
    else:
        hd95 = asd = fallback
    return {
        "dice": dice_from_counts(intersection, n_pred, n_gt),
        "iou": iou_from_counts(intersection, n_pred, n_gt),
        "hd95": hd95,
        "asd": asd,
        "volume_pred_ml": n_pred * voxel_ml,
        "volume_gt_ml": n_gt * voxel_ml,
        "volume_diff_ml": (n_pred - n_gt) * voxel_ml,
        "volume_rel_diff": (n_pred - n_gt) / n_gt if n_gt else None,
        "voxels_pred": n_pred,
        "voxels_gt": n_gt,
    }


def aggregate(
    case_results: Sequence[Mapping[str, Mapping[str, Any]]]
    | Mapping[str, Mapping[str, Mapping[str, Any]]],
    metrics: Sequence[str] = METRICS,
) -> dict[str, Any]:
    """Summarise :func:`evaluate_case` results (a list, or ``{case_id: result}``).

    Returns ``{"n_cases": N, "labels": {label: {metric: {"mean", "median", "std", "min", "max",
    "n", "n_excluded"}}}, "mean": {metric: mean over labels of the label means}}``. Values that
    are None (undefined, see the module docstring) or not finite are left out and counted in
    ``n_excluded``; a statistic of no values is None. ``std`` is the sample standard deviation
    (ddof=1), None for fewer than two values.
    """
    cases = list(case_results.values()) if isinstance(case_results, Mapping) else list(case_results)
    names: dict[str, None] = {}
    for case in cases:
        names.update(dict.fromkeys(case))
    per_label = {}
    for name in names:
        per_label[name] = {}
        for metric in metrics:
            values, excluded = [], 0
            for case in cases:
                value = case.get(name, {}).get(metric)
                if value is None or not math.isfinite(float(value)):
                    excluded += 1
                else:
                    values.append(float(value))
            per_label[name][metric] = _statistics(values, excluded)
    mean = {}
    for metric in metrics:
        label_means = [
            per_label[n][metric]["mean"] for n in names if per_label[n][metric]["mean"] is not None
        ]
        mean[metric] = float(np.mean(label_means)) if label_means else None
    return {"n_cases": len(cases), "labels": per_label, "mean": mean}


def _statistics(values: list[float], excluded: int) -> dict[str, Any]:
    if not values:
        return {
            "mean": None,
            "median": None,
            "std": None,
            "min": None,
            "max": None,
            "n": 0,
            "n_excluded": excluded,
        }
    array = np.asarray(values, dtype=float)
    return {
        "mean": float(array.mean()),
        "median": float(np.median(array)),
        "std": float(array.std(ddof=1)) if array.size > 1 else None,
        "min": float(array.min()),
        "max": float(array.max()),
        "n": int(array.size),
        "n_excluded": excluded,
    }


# --- inputs -------------------------------------------------------------------------------------
def _unwrap(data: Any, what: str) -> tuple[np.ndarray, tuple[float, ...] | None, np.ndarray | None]:
    """A label map as an integer array, with the spacing and affine of a ``Volume``."""
    spacing = affine = None
    if hasattr(data, "array") and hasattr(data, "spacing"):  # medseg3d.io.Volume (duck-typed)
        spacing, affine = tuple(float(s) for s in data.spacing), getattr(data, "affine", None)
        array = np.asarray(data.array)
        if getattr(data, "has_channels", False):
            if array.shape[-1] != 1:
                raise ShapeError(f"the {what} has {array.shape[-1]} channels; give one label map")
            array = array[..., 0]
    else:
        array = np.asarray(data.detach().cpu() if hasattr(data, "detach") else data)
    if array.dtype == bool:
        return array.astype(np.uint8), spacing, affine
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.array_equal(array, np.rint(array)):
            raise InvalidVoxelError(
                f"the {what} must be a label map of whole numbers, got {array.dtype} values"
            )
        array = np.rint(array).astype(np.int64)
    return array, spacing, affine


def _check_labels(
    labels: Mapping[str, int | Sequence[int]] | Sequence[int],
) -> dict[str, list[int]]:
    if isinstance(labels, Sequence) and not isinstance(labels, str):
        labels = {str(value): value for value in labels}  # [1, 2] -> {"1": 1, "2": 2}
    if not isinstance(labels, Mapping) or not labels:
        raise ConfigError(f"labels must be a non-empty {{name: value}} mapping, got {labels!r}")
    regions = {}
    for name, value in labels.items():
        values = [value] if np.isscalar(value) else list(value)
        if not values or any(isinstance(v, bool) or int(v) != v for v in values):
            raise ConfigError(
                f"label {name!r} must be an integer or a list of integers, got {value!r}"
            )
        regions[str(name)] = [int(v) for v in values]
    return regions


def _empty_distance(empty_distance: float | str | None, shape, spacing) -> float | None:
    if empty_distance is None:
        return None
    if empty_distance == "diagonal":
        return float(np.linalg.norm(np.asarray(shape, dtype=float) * np.asarray(spacing)))
    try:
        value = float(empty_distance)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(
            f"empty_distance must be None, 'diagonal' or a distance >= 0 in mm, got {empty_distance!r}"
        )
    return value


class _Boxes:
    """Bounding boxes of label values, from one ``find_objects`` pass over the array."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.objects = None
        if array.size and array.min() >= 0 and array.max() < _FIND_OBJECTS_MAX_LABEL:
            self.objects = ndimage.find_objects(array.astype(np.int32, copy=False))

    def box(self, values: list[int]) -> tuple[slice, ...] | None:
        boxes = []
        for value in values:
            if self.objects is not None and value > 0:
                boxes.append(self.objects[value - 1] if value <= len(self.objects) else None)
            else:
                boxes.append(_mask_box(self.array == value))
        return _union(boxes)


def _mask_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    if not mask.any():
        return None
    box = []
    for axis in range(mask.ndim):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _union(boxes: list[tuple[slice, ...] | None]) -> tuple[slice, ...] | None:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    return tuple(
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes))
        for a in range(len(boxes[0]))
    )
