"""``save_volume``: write a result on its reference's exact grid, atomically, never over an input."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from medseg3d.errors import OutputError
from medseg3d.io.atomic import atomic_path
from medseg3d.io.checks import check_finite, check_label_values
from medseg3d.io.itk import ITK_WRITE_SUFFIXES, has_suffix, write_itk
from medseg3d.io.nifti import write_nifti
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

#: Output formats by extension.
WRITE_SUFFIXES = (".nii.gz", ".nii") + ITK_WRITE_SUFFIXES


def save_volume(
    data: Volume | np.ndarray,
    path: str | os.PathLike,
    *,
    reference: Volume | None = None,
    dtype: np.dtype | str | None = None,
    is_label: bool | None = None,
) -> Path:
    """Write ``data`` to ``path`` (``.nii.gz``, ``.nii``, ``.mha`` or ``.nrrd``); returns the path.

    Args:
        data: a :class:`Volume`, or an array ``(X, Y, Z[, C])`` on ``reference``'s grid (numpy,
            or anything ``numpy.asarray`` accepts, e.g. a CPU tensor).
        reference: the volume the result belongs to. Its affine, spatial shape and orientation
            are written exactly; ``path`` must not be its file (nor one of its DICOM files).
        dtype: storage dtype. Default: label maps uint8 (uint16/int32 for larger labels),
            floating images float32, integer images unchanged.
        is_label: store as a label map (intent LABEL, scl 1/0). Default: ``data.meta['is_label']``
            or True for integer/bool arrays.
    """
    path = Path(path)
    volume = _as_volume(data, reference, path)
    _refuse_inputs(path, reference, volume)
    if not path.name.lower().endswith(WRITE_SUFFIXES):
        raise OutputError(
            f"cannot write this format; use one of {', '.join(WRITE_SUFFIXES)}", path=path
        )
    array = np.asarray(volume.array)
    if array.dtype == np.float16:
        array = array.astype(np.float32)
    if is_label is None:
        is_label = _default_is_label(data, volume, array)
    if is_label:
        labels = check_label_values(array, path=str(path))
        array = array.astype(dtype or _label_dtype(labels), copy=False)
    else:
        check_finite(array, path=str(path))
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        elif array.dtype == bool:
            array = array.astype(np.uint8)
        elif np.issubdtype(array.dtype, np.floating) and array.dtype != np.float32:
            array = array.astype(np.float32)
        elif array.dtype == np.int64:
            array = array.astype(np.int32) if _fits(array, np.int32) else array
    volume = Volume(array, volume.affine, dict(volume.meta), has_channels=volume.has_channels)
    with atomic_path(path) as temporary:
        if has_suffix(path, ITK_WRITE_SUFFIXES):
            write_itk(volume, temporary)
        else:
            write_nifti(volume, temporary, is_label=is_label)
    logger.debug("wrote %s %s to %s", "label map" if is_label else "image", array.shape, path)
    return path


def _as_volume(data, reference: Volume | None, path: Path) -> Volume:
    if isinstance(data, Volume):
        if reference is None:
            return data
        if data.spatial_shape != reference.spatial_shape:
            raise OutputError(
                f"result grid {data.spatial_shape} differs from the reference grid "
                f"{reference.spatial_shape}; resample it with resample_to_grid first",
                path=path,
            )
        if not np.allclose(data.affine, reference.affine, atol=1e-4):
            raise OutputError(
                "result affine differs from the reference affine; bring it back with "
                "resample_to_grid(result, reference.spatial_shape, reference.affine, kind=...)",
                path=path,
            )
        return Volume(
            data.array, reference.affine, {**reference.meta, **data.meta}, data.has_channels
        )
    if hasattr(data, "detach"):
        data = data.detach().cpu().numpy()
    array = np.asarray(data)
    if reference is None:
        raise OutputError(
            "an array has no geometry: pass reference=<the input Volume> or save a Volume",
            path=path,
        )
    spatial = reference.spatial_shape
    if array.shape[: len(spatial)] != spatial or array.ndim > len(spatial) + 1:
        hint = ""
        if array.shape[-len(spatial) :] == spatial:
            hint = " (channel-first? move the channel axis last)"
        elif tuple(array.shape[::-1][: len(spatial)]) == spatial:
            hint = " (axes reversed? SimpleITK arrays are (Z, Y, X); transpose them)"
        raise OutputError(
            f"array of shape {array.shape} does not fit the reference grid {spatial}{hint}",
            path=path,
        )
    meta = {k: v for k, v in reference.meta.items() if k != "is_label"}
    return Volume(array, reference.affine, meta, has_channels=array.ndim > len(spatial))


def _refuse_inputs(path: Path, reference: Volume | None, volume: Volume) -> None:
    inputs = []
    for source in (reference, volume):
        if source is None:
            continue
        inputs.append(source.source)
        inputs += list(source.meta.get("dicom_files") or [])
    target = path.resolve()
    for candidate in filter(None, inputs):
        candidate = Path(candidate)
        if candidate.exists() and candidate.is_file() and candidate.resolve() == target:
            raise OutputError(
                "refusing to overwrite an input file; choose another output path", path=path
            )
        if candidate.is_dir() and target == candidate.resolve():
            raise OutputError("output path is the input folder", path=path)


def _default_is_label(data, volume: Volume, array: np.ndarray) -> bool:
    """``meta['is_label']`` when set; else: bool/uint8 arrays are labels; arrays with negative
    or fractional values are images; int64 arrays (what ``argmax`` returns) and plain arrays
    are labels; other integer Volumes read from a file (MR in uint16, CT in int32) are images."""
    if volume.meta.get("is_label") is not None:
        return bool(volume.meta["is_label"])
    if array.dtype == bool or array.dtype == np.uint8:
        return True
    if not np.issubdtype(array.dtype, np.integer) or (array.size and array.min() < 0):
        return False
    if array.dtype == np.int64 or not isinstance(data, Volume):
        return True
    return not data.meta.get("format")


def _label_dtype(labels: np.ndarray) -> np.dtype:
    top = int(labels[-1]) if labels.size else 0
    if top <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if top <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    return np.dtype(np.int32)


def _fits(array: np.ndarray, dtype) -> bool:
    info = np.iinfo(dtype)
    return array.size == 0 or (info.min <= array.min() and array.max() <= info.max)
