"""Preprocessing shared by training and prediction, and its exact inverse for the outputs.

``preprocess``: reorient to ``plan.orientation`` (exact axis permutation/flips), normalise each
channel (before resampling, as nnU-Net does, so masks such as "non-zero" are taken on the
original voxels), resample to ``plan.target_spacing`` (images ``plan.image_interpolation``,
labels nearest neighbour). ``restore_labels`` / ``restore_probabilities`` bring a network output
on the preprocessed grid back onto the input's exact grid (shape and affine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from medseg3d.data import grid
from medseg3d.data.normalization import normalize_channel
from medseg3d.data.plan import Plan
from medseg3d.errors import ShapeError
from medseg3d.io.volume import Volume

#: Largest affine difference (mm at the grid corners) accepted between channels / image and label.
GRID_TOLERANCE_MM = 1e-4


@dataclass
class RestoreInfo:
    """The three grids of a preprocessed case (shapes in voxels, 4x4 affines to RAS+ mm)."""

    original_shape: tuple[int, ...]
    original_affine: np.ndarray
    reoriented_shape: tuple[int, ...]
    reoriented_affine: np.ndarray
    shape: tuple[int, ...]
    affine: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """Plain lists (JSON/YAML-safe)."""
        return {
            "original_shape": list(self.original_shape),
            "original_affine": np.asarray(self.original_affine).tolist(),
            "reoriented_shape": list(self.reoriented_shape),
            "reoriented_affine": np.asarray(self.reoriented_affine).tolist(),
            "shape": list(self.shape),
            "affine": np.asarray(self.affine).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RestoreInfo:
        return cls(
            original_shape=tuple(int(n) for n in data["original_shape"]),
            original_affine=np.asarray(data["original_affine"], dtype=np.float64),
            reoriented_shape=tuple(int(n) for n in data["reoriented_shape"]),
            reoriented_affine=np.asarray(data["reoriented_affine"], dtype=np.float64),
            shape=tuple(int(n) for n in data["shape"]),
            affine=np.asarray(data["affine"], dtype=np.float64),
        )


@dataclass
class PreprocessedCase:
    """``image``: ``(C, *spatial)`` float32; ``label``: ``(1, *spatial)`` uint8/int16 or None."""

    image: np.ndarray
    label: np.ndarray | None
    restore: RestoreInfo


def preprocess(
    images: Volume | list[Volume], plan: Plan, label: Volume | None = None
) -> PreprocessedCase:
    """Reorient, normalise and resample one case as ``plan`` says.

    ``images``: one Volume (a trailing channel axis for several channels) or one Volume per
    channel, all on one grid. ``label`` (optional) must lie on the same grid. Output arrays are
    channel-first on the plan's grid (orientation ``plan.orientation``, spacing
    ``plan.target_spacing`` mm).
    """
    channels, reference = _channels(images, plan)
    shape, affine = reference.spatial_shape, reference.affine
    label_array = None
    if label is not None:
        _check_same_grid(label, reference, "label")
        label_array = np.asarray(label.array)
        if label_array.ndim != len(shape):
            label_array = label_array.reshape(shape)
    if plan.orientation is not None and plan.spatial_dims == 3:
        moved = [grid.reorient_array(c, affine, plan.orientation)[0] for c in channels]
        reoriented = grid.reorient_array(np.zeros(shape, dtype=np.uint8), affine, plan.orientation)
        reoriented_shape, reoriented_affine = reoriented[0].shape, reoriented[1]
        channels = moved
        if label_array is not None:
            label_array = grid.reorient_array(label_array, affine, plan.orientation)[0]
    else:
        reoriented_shape, reoriented_affine = tuple(shape), affine.copy()
    normalized = np.stack(
        [normalize_channel(c, entry) for c, entry in zip(channels, plan.normalization)]
    )
    target_shape, target_affine = grid.spacing_grid(
        reoriented_shape, reoriented_affine, plan.target_spacing
    )
    image = grid.resample_channels(
        normalized, reoriented_affine, target_shape, target_affine, plan.image_interpolation
    )
    if label_array is not None:
        dtype = (
            np.uint8
            if label_array.max(initial=0) < 256 and label_array.min(initial=0) >= 0
            else np.int16
        )
        label_array = grid.resample_labels(
            label_array.astype(dtype), reoriented_affine, target_shape, target_affine, "nearest"
        )[None]
    restore = RestoreInfo(
        original_shape=tuple(shape),
        original_affine=affine.copy(),
        reoriented_shape=tuple(reoriented_shape),
        reoriented_affine=reoriented_affine,
        shape=tuple(target_shape),
        affine=target_affine,
    )
    return PreprocessedCase(np.ascontiguousarray(image, dtype=np.float32), label_array, restore)


def restore_labels(labels: np.ndarray, restore: RestoreInfo, *, kind: str = "onehot") -> Volume:
    """A label map on the preprocessed grid ``(*spatial)`` (or ``(1, *spatial)``) -> a label
    Volume on the original input grid: same shape, same affine.

    ``kind="onehot"`` resamples each class linearly and takes the arg-max (smooth when the
    original grid is finer); ``"nearest"`` is faster for many classes.
    """
    labels = np.asarray(labels)
    if labels.ndim == len(restore.shape) + 1:
        labels = labels[0]
    if labels.shape != tuple(restore.shape):
        raise ShapeError(
            f"labels of shape {labels.shape} do not lie on the preprocessed grid {restore.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        labels = labels.astype(np.int16)
    back = grid.resample_labels(
        labels, restore.affine, restore.reoriented_shape, restore.reoriented_affine, kind
    )
    back = _undo_orientation(back, restore)
    return Volume(back, restore.original_affine.copy(), {"is_label": True})


def restore_probabilities(probabilities: np.ndarray, restore: RestoreInfo) -> Volume:
    """``(C, *spatial)`` float maps on the preprocessed grid -> a Volume ``(*original, C)``
    (channels last, the Volume convention) on the original grid, resampled linearly."""
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.shape[1:] != tuple(restore.shape):
        raise ShapeError(
            f"probabilities of shape {probabilities.shape} do not lie on the preprocessed grid (C, *{restore.shape})"
        )
    back = grid.resample_channels(
        probabilities, restore.affine, restore.reoriented_shape, restore.reoriented_affine, "linear"
    )
    back = np.stack([_undo_orientation(c, restore) for c in back], axis=-1)
    return Volume(back, restore.original_affine.copy(), {}, has_channels=True)


def _undo_orientation(array: np.ndarray, restore: RestoreInfo) -> np.ndarray:
    if np.allclose(restore.reoriented_affine, restore.original_affine) and array.shape == tuple(
        restore.original_shape
    ):
        return array
    return grid.undo_reorientation(array, restore.reoriented_affine, restore.original_affine)


def _channels(images: Volume | list[Volume], plan: Plan) -> tuple[list[np.ndarray], Volume]:
    volumes = [images] if isinstance(images, Volume) else list(images)
    if not volumes:
        raise ShapeError("preprocess needs at least one image")
    reference = volumes[0]
    channels: list[np.ndarray] = []
    for number, volume in enumerate(volumes):
        if number:
            _check_same_grid(volume, reference, f"channel {number}")
        array = np.asarray(volume.array)
        if volume.has_channels:
            channels += [array[..., c] for c in range(array.shape[-1])]
        else:
            channels.append(array)
    if reference.spatial_dims != plan.spatial_dims:
        raise ShapeError(
            f"{reference.source or 'image'}: a {reference.spatial_dims}D image, but the plan is {plan.spatial_dims}D"
        )
    if len(channels) != plan.num_channels:
        raise ShapeError(
            f"{reference.source or 'image'}: {len(channels)} channel(s) given, the plan expects "
            f"{plan.num_channels} ({', '.join(plan.channel_names)})"
        )
    return channels, reference


def _check_same_grid(volume: Volume, reference: Volume, what: str) -> None:
    if volume.spatial_shape != reference.spatial_shape:
        raise ShapeError(
            f"{volume.source or what}: shape {volume.spatial_shape} differs from the image's {reference.spatial_shape}"
        )
    if not np.allclose(volume.affine, reference.affine, rtol=0, atol=GRID_TOLERANCE_MM):
        raise ShapeError(
            f"{volume.source or what}: geometry (affine) differs from the image's; resample it onto the image grid"
        )
