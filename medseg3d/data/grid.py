"""Exact grid moves for preprocessing: reorientation (axis permutations/flips, no interpolation)
and resampling between two axis-aligned grids of the same field of view.

Reorienting only transposes and flips the array, so undoing it is exact. Resampling to a
spacing keeps the field of view: the new grid's voxel *edges* coincide with the old grid's
(``new_shape = round(shape * spacing / target)``, the actual spacing is within half a voxel of
the target), and moving back to the old grid uses the inverse index map. When the shapes are
equal the grid is unchanged and no interpolation happens.
"""

from __future__ import annotations

import nibabel.orientations as nio
import numpy as np
from scipy import ndimage

from medseg3d.errors import ShapeError

ORDERS = {"nearest": 0, "linear": 1, "cubic": 3}


def reorientation(affine: np.ndarray, codes: str) -> np.ndarray:
    """nibabel orientation transform (``(3, 2)`` array) from ``affine``'s axes to ``codes``."""
    return nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(tuple(codes)))


def reorient_array(
    array: np.ndarray, affine: np.ndarray, codes: str
) -> tuple[np.ndarray, np.ndarray]:
    """Transpose/flip the first 3 axes of ``array`` so they run along ``codes``; new affine too."""
    transform = reorientation(affine, codes)
    shape = array.shape[:3]
    moved = nio.apply_orientation(array, transform)
    return np.ascontiguousarray(moved), affine @ nio.inv_ornt_aff(transform, shape)


def undo_reorientation(
    array: np.ndarray, reoriented_affine: np.ndarray, original_affine: np.ndarray
) -> np.ndarray:
    """The inverse of :func:`reorient_array`: back to the axis order of ``original_affine``."""
    transform = nio.ornt_transform(
        nio.io_orientation(reoriented_affine), nio.io_orientation(original_affine)
    )
    return np.ascontiguousarray(nio.apply_orientation(array, transform))


def spacing_grid(
    shape: tuple[int, ...], affine: np.ndarray, target_spacing
) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and affine of the grid covering the same field of view at ``target_spacing`` mm."""
    dims = len(shape)
    spacing = np.linalg.norm(affine[:3, :dims], axis=0)
    new_shape = tuple(
        max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target_spacing)
    )
    step = np.asarray(shape, dtype=np.float64) / np.asarray(new_shape, dtype=np.float64)
    index_map = np.eye(4)
    index_map[:dims, :dims] = np.diag(step)
    index_map[:dims, 3] = 0.5 * step - 0.5  # voxel edges of both grids coincide
    return new_shape, affine @ index_map


def resample_channels(
    channels: np.ndarray,
    source_affine: np.ndarray,
    target_shape: tuple[int, ...],
    target_affine: np.ndarray,
    kind: str = "linear",
) -> np.ndarray:
    """Resample ``(C, *spatial)`` float data from one axis-aligned grid onto another.

    Both grids must share axis directions (they differ by per-axis scaling and a shift), as
    produced by :func:`spacing_grid`. Outside the source the nearest edge value is used.
    """
    dims = channels.ndim - 1
    if tuple(channels.shape[1:]) == tuple(target_shape) and np.allclose(
        source_affine, target_affine, atol=1e-6
    ):
        return channels.astype(np.float32, copy=False)
    index_map = np.linalg.solve(source_affine, target_affine)
    matrix = index_map[:dims, :dims]
    if not np.allclose(matrix, np.diag(np.diag(matrix)), atol=1e-6):
        raise ShapeError(
            "the two grids are not axis-aligned with each other; cannot resample by axis scaling"
        )
    order = ORDERS[kind]
    out = np.empty((channels.shape[0], *target_shape), dtype=np.float32)
    for c in range(channels.shape[0]):
        ndimage.affine_transform(
            channels[c].astype(np.float32, copy=False),
            np.diag(matrix),
            offset=index_map[:dims, 3],
            output_shape=tuple(target_shape),
            output=out[c],
            order=order,
            mode="nearest",
            prefilter=order > 1,
        )
    return out


def resample_labels(
    labels: np.ndarray,
    source_affine: np.ndarray,
    target_shape: tuple[int, ...],
    target_affine: np.ndarray,
    kind: str = "nearest",
) -> np.ndarray:
    """Resample an integer label map ``(*spatial)``: ``"nearest"``, or ``"onehot"`` (each
    present class resampled linearly, then the arg-max: smooth edges when upsampling)."""
    dims = labels.ndim
    if tuple(labels.shape) == tuple(target_shape) and np.allclose(
        source_affine, target_affine, atol=1e-6
    ):
        return labels
    if kind == "nearest":
        index_map = np.linalg.solve(source_affine, target_affine)
        out = ndimage.affine_transform(
            labels,
            np.diag(index_map[:dims, :dims]),
            offset=index_map[:dims, 3],
            output_shape=tuple(target_shape),
            order=0,
            mode="nearest",
            prefilter=False,
        )
        return out.astype(labels.dtype, copy=False)
    return _resample_onehot(labels, source_affine, tuple(target_shape), target_affine)


def _resample_onehot(labels, source_affine, target_shape, target_affine) -> np.ndarray:
    """Linear interpolation of each foreground class's indicator, then the arg-max (the
    background's score is 1 minus the others': linear weights sum to one). Only the box around
    the foreground is resampled; everything else is background."""
    dims = labels.ndim
    out = np.zeros(target_shape, dtype=labels.dtype)
    foreground = np.nonzero(labels)
    if not foreground[0].size:
        return out
    index_map = np.linalg.solve(source_affine, target_affine)  # target index -> source index
    scale, offset = np.diag(index_map[:dims, :dims]), index_map[:dims, 3]
    low = np.array([a.min() for a in foreground]) - 1.0
    high = np.array([a.max() for a in foreground]) + 1.0
    ends = np.stack([(low - offset) / scale, (high - offset) / scale])
    t_low = np.clip(np.floor(ends.min(0)), 0, np.array(target_shape) - 1).astype(int)
    t_high = np.clip(np.ceil(ends.max(0)), 0, np.array(target_shape) - 1).astype(int)
    corners = np.stack([scale * t_low + offset, scale * t_high + offset])
    s_low = np.clip(np.floor(corners.min(0)) - 1, 0, np.array(labels.shape) - 1).astype(int)
    s_high = np.clip(np.ceil(corners.max(0)) + 1, 0, np.array(labels.shape) - 1).astype(int)
    crop = labels[tuple(slice(a, b + 1) for a, b in zip(s_low, s_high))]
    box_shape = tuple(int(n) for n in t_high - t_low + 1)
    box_offset = scale * t_low + offset - s_low
    best = np.zeros(box_shape, dtype=np.float32)
    total = np.zeros(box_shape, dtype=np.float32)
    box = np.zeros(box_shape, dtype=labels.dtype)
    for value in np.unique(crop):
        if value == 0:
            continue
        score = ndimage.affine_transform(
            (crop == value).astype(np.float32),
            scale,
            offset=box_offset,
            output_shape=box_shape,
            order=1,
            mode="nearest",
            prefilter=False,
        )
        total += score
        better = score > best
        box[better] = value
        best[better] = score[better]
    box[best <= 1.0 - total] = 0  # the background wins
    out[tuple(slice(a, b + 1) for a, b in zip(t_low, t_high))] = box
    return out
