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
    classes = np.unique(labels)
    best = np.full(tuple(target_shape), -1.0, dtype=np.float32)
    out = np.zeros(tuple(target_shape), dtype=labels.dtype)
    for value in classes:
        mask = (labels == value)[None].astype(np.float32)
        score = resample_channels(mask, source_affine, target_shape, target_affine, "linear")[0]
        better = score > best
        out[better] = value
        best[better] = score[better]
    return out
