"""Voxel checks: finite intensities for images, whole numbers for label maps."""

from __future__ import annotations

import numpy as np

from medseg3d.errors import InvalidVoxelError, ShapeError
from medseg3d.io.volume import Volume


def _array_and_path(data: Volume | np.ndarray) -> tuple[np.ndarray, str | None]:
    if isinstance(data, Volume):
        return np.asarray(data.array), data.source
    return np.asarray(data), None


def check_finite(data: Volume | np.ndarray, *, path: str | None = None) -> None:
    """Raise :class:`InvalidVoxelError` when an image holds NaN or Inf voxels."""
    array, source = _array_and_path(data)
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(
        array.dtype, np.complexfloating
    ):
        return
    finite = np.isfinite(array)
    if finite.all():
        return
    nan = int(np.isnan(array).sum())
    inf = int(array.size - finite.sum() - nan)
    first = tuple(int(i) for i in np.argwhere(~finite)[0])
    raise InvalidVoxelError(
        f"image has {nan} NaN and {inf} Inf voxels (first at index {first}); "
        "fix or mask them before segmenting (e.g. numpy.nan_to_num)",
        path=path or source,
    )


def check_label_values(
    data: Volume | np.ndarray, *, path: str | None = None, max_label: int | None = None
) -> np.ndarray:
    """Check that a label map holds whole, non-negative numbers; return its sorted labels.

    Raises :class:`InvalidVoxelError` for fractional, negative, NaN/Inf values or labels above
    ``max_label``.
    """
    array, source = _array_and_path(data)
    where = path or source
    if array.dtype == bool:
        return np.unique(array).astype(np.int64)
    if np.issubdtype(array.dtype, np.floating):
        check_finite(array, path=where)
        fractional = array != np.round(array)
        if fractional.any():
            example = float(array[fractional].flat[0])
            raise InvalidVoxelError(
                f"label map has {int(fractional.sum())} non-integer voxels (e.g. {example:g}); "
                "labels must be whole numbers: was an image or probability map given as labels?",
                path=where,
            )
    elif not np.issubdtype(array.dtype, np.integer):
        raise InvalidVoxelError(f"label map has dtype {array.dtype}, not integer", path=where)
    labels = np.unique(array)
    if labels.size and labels[0] < 0:
        raise InvalidVoxelError(
            f"label map has negative values (min {labels[0]:g}); labels must be >= 0", path=where
        )
    if max_label is not None and labels.size and labels[-1] > max_label:
        raise InvalidVoxelError(
            f"label map has value {labels[-1]:g} above the largest expected label {max_label}",
            path=where,
        )
    return labels.astype(np.int64)


def check_single_channel(volume: Volume, *, what: str = "this step") -> None:
    """Raise :class:`ShapeError` naming the file when a multi-channel / 4D volume is given
    where one channel is required (e.g. a label map, a DICOM series export, a 1-channel model).
    """
    if volume.has_channels and volume.num_channels > 1:
        raise ShapeError(
            f"{what} needs a single-channel 3D volume, but it has {volume.num_channels} channels "
            f"(4D or multi-channel input, array shape {volume.array.shape}); pick one channel, "
            "e.g. volume.with_array(volume.array[..., 0])",
            path=volume.source,
        )
