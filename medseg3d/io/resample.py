"""Reorientation and resampling of Volumes in world coordinates (scipy, any affine).

``resample_to_grid`` is the one resampler: every target voxel centre is mapped through the
target affine to RAS mm and back through the inverse source affine to a (fractional) source
index, where the source is interpolated. ``resample_to_spacing`` builds a grid with the same
directions and field of view and calls it; ``resample_to_grid(result, original.spatial_shape,
original.affine, kind="nearest")`` brings a mask back onto the original grid exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medseg3d.errors import ConfigError
from medseg3d.io.volume import Volume

#: Interpolation kinds: spline order for images, or a label-preserving scheme.
KINDS = {"nearest": 0, "linear": 1, "cubic": 3, "onehot": 1}
#: Per-slice DICOM metadata that no longer applies once voxels move.
SLICE_KEYS = ("dicom_files", "sop_instance_uids", "frame_numbers", "slice_positions_mm")


def reorient(volume: Volume, codes: str | Sequence[str] = "RAS") -> Volume:
    """Permute/flip the array axes so they point along ``codes`` (e.g. ``"RAS"``, ``"LPS"``).

    No interpolation: voxels are only transposed and flipped, and the affine is updated so every
    voxel keeps its world position. ``meta['original_orientation']`` remembers the input codes,
    so :func:`reorient_back` (or ``reorient(v, original_codes)``) restores the input exactly.
    """
    import nibabel as nib

    codes = tuple(codes)
    volume3 = _as_3d(volume)
    current = nib.orientations.io_orientation(volume3.affine)
    target = nib.orientations.axcodes2ornt(codes)
    transform = nib.orientations.ornt_transform(current, target)
    array = nib.orientations.apply_orientation(volume3.array, transform)
    affine = volume3.affine @ nib.orientations.inv_ornt_aff(transform, volume3.spatial_shape)
    meta = dict(volume.meta)
    meta.setdefault("original_orientation", "".join(volume3.orientation))
    if not np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):  # slices no longer match files
        for key in SLICE_KEYS:
            meta.pop(key, None)
    if volume.spatial_dims == 2 and array.shape[2] == 1:  # the slice axis stayed last: 2D again
        array = array[:, :, 0, ...]
    return Volume(np.ascontiguousarray(array), affine, meta, has_channels=volume.has_channels)


def reorient_back(volume: Volume) -> Volume:
    """Undo :func:`reorient` using ``meta['original_orientation']``."""
    codes = volume.meta.get("original_orientation")
    if codes is None:
        return volume
    result = reorient(volume, codes)
    result.meta.pop("original_orientation", None)
    return result


def resample_to_spacing(
    volume: Volume,
    spacing: float | Sequence[float | None],
    *,
    kind: str = "linear",
    fill: float | None = None,
) -> Volume:
    """Resample to ``spacing`` (mm per array axis; ``None`` keeps an axis) with the same directions.

    The new grid covers the same field of view (outer voxel edges aligned); its shape is the old
    extent divided by the new spacing, rounded. ``kind``: ``"linear"`` / ``"cubic"`` for images,
    ``"nearest"`` / ``"onehot"`` (linear interpolation of each label's indicator, then argmax)
    for label maps. ``meta['original_grid']`` keeps ``(shape, affine)`` for the way back.
    """
    old_spacing = np.array(volume.spacing, dtype=np.float64)
    dims = volume.spatial_dims
    wanted = [spacing] * dims if np.isscalar(spacing) else list(spacing)
    if len(wanted) != dims:
        raise ConfigError(f"spacing {spacing} needs {dims} values (one per axis), in mm")
    new_spacing = np.array([old if s is None else float(s) for s, old in zip(wanted, old_spacing)])
    if np.any(new_spacing <= 0):
        raise ConfigError(f"spacing must be positive, got {spacing}")
    old_shape = np.array(volume.spatial_shape)
    shape = np.maximum(1, np.round(old_shape * old_spacing / new_spacing)).astype(int)
    shape = np.where(np.isclose(new_spacing, old_spacing, rtol=1e-6), old_shape, shape)
    affine = volume.affine.copy()
    scale = new_spacing / old_spacing
    affine[:3, :dims] = volume.affine[:3, :dims] * scale
    # keep the outer edge of voxel 0 fixed: centre moves by half a new voxel minus half an old one
    affine[:3, 3] = volume.affine[:3, 3] + volume.affine[:3, :dims] @ ((scale - 1.0) / 2.0)
    result = resample_to_grid(volume, tuple(int(s) for s in shape), affine, kind=kind, fill=fill)
    result.meta.setdefault("original_grid", (volume.spatial_shape, volume.affine.copy()))
    return result


def resample_to_grid(
    volume: Volume,
    shape: Sequence[int],
    affine: np.ndarray,
    *,
    kind: str = "linear",
    fill: float | None = None,
) -> Volume:
    """Resample ``volume`` onto the grid ``(shape, affine)`` (4x4 voxel -> RAS mm).

    Points outside the source take ``fill`` (default: 0 for labels, the image minimum for
    images). Channels ``(X, Y, Z, C)`` are resampled one by one. Returns a Volume whose
    ``spatial_shape`` and ``affine`` are exactly ``shape`` and ``affine``.
    """
    from scipy import ndimage

    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r} is not one of {sorted(KINDS)}")
    shape = tuple(int(s) for s in shape)
    affine = np.asarray(affine, dtype=np.float64)
    if len(shape) != volume.spatial_dims:
        raise ConfigError(f"shape {shape} has {len(shape)} axes, volume has {volume.spatial_dims}")
    source = _as_3d(volume)
    shape3 = shape + (1,) * (3 - len(shape))
    index_map = np.linalg.inv(source.affine) @ affine  # target index -> source index
    identity = np.allclose(index_map, np.eye(4), atol=1e-6) and shape3 == source.spatial_shape
    channels = source.channel_first()
    if identity:
        out = channels.copy()
    else:
        out = np.stack(
            [
                _resample_channel(ndimage, c, index_map, shape3, kind, fill, source.spatial_shape)
                for c in channels
            ]
        )
    array = np.moveaxis(out, 0, -1) if volume.has_channels else out[0]
    if len(shape) == 2:
        array = array[:, :, 0, ...]
    meta = {k: v for k, v in volume.meta.items() if identity or k not in SLICE_KEYS}
    return Volume(np.ascontiguousarray(array), affine, meta, has_channels=volume.has_channels)


def _resample_channel(ndimage, array, index_map, shape, kind, fill, source_shape) -> np.ndarray:
    matrix, offset = index_map[:3, :3], index_map[:3, 3]
    if np.count_nonzero(matrix - np.diag(np.diag(matrix))) == 0 and KINDS[kind] <= 1:
        matrix = np.diag(matrix)  # axis-aligned: scipy's faster separable path
    outside = _outside_mask(index_map, shape, source_shape)
    if kind == "onehot":
        labels = np.unique(array)
        best = np.full(shape, -1.0, dtype=np.float32)
        out = np.zeros(shape, dtype=array.dtype)
        for label in labels:
            indicator = (array == label).astype(np.float32)
            score = ndimage.affine_transform(
                indicator, matrix, offset, shape, order=1, mode="nearest"
            )
            better = score > best
            out[better] = label
            best = np.maximum(best, score)
        out[outside] = 0 if fill is None else fill
        return out
    order = KINDS[kind]
    floating = np.issubdtype(array.dtype, np.floating)
    work = array if (floating or order == 0) else array.astype(np.float32)
    if fill is None:
        fill = 0 if order == 0 and not floating else float(array.min()) if array.size else 0.0
    if order == 0:
        out = ndimage.affine_transform(work, matrix, offset, shape, order=0, mode="nearest")
    else:
        out = ndimage.affine_transform(
            work, matrix, offset, shape, order=order, mode="nearest", prefilter=order > 1
        )
        if not floating:
            info = np.iinfo(array.dtype)
            out = np.clip(np.round(out), info.min, info.max).astype(array.dtype)
    out[outside] = fill
    return out


def _outside_mask(index_map, shape, source_shape) -> np.ndarray | slice:
    """Where a target voxel centre falls outside the source field of view (half-voxel margin).

    Returns an index selecting nothing when the whole target grid lies inside, which is
    checked on its 8 corners since the map is affine.
    """
    from scipy import ndimage

    corners = np.array(np.meshgrid(*[[0, s - 1] for s in shape], indexing="ij")).reshape(3, -1)
    points = index_map[:3, :3] @ corners + index_map[:3, 3:4]
    limits = np.array(source_shape, dtype=np.float64)[:, None]
    if np.all((points >= -0.5 - 1e-6) & (points <= limits - 0.5 + 1e-6)):
        return np.s_[0:0]
    ones = np.ones(source_shape, dtype=np.uint8)
    inside = ndimage.affine_transform(
        ones, index_map[:3, :3], index_map[:3, 3], shape, order=0, mode="constant", cval=0
    )
    return inside == 0


def _as_3d(volume: Volume) -> Volume:
    """A 2D volume ``(X, Y[, C])`` as 3D ``(X, Y, 1[, C])`` on the same affine."""
    if volume.spatial_dims == 3:
        return volume
    if volume.spatial_dims != 2:
        raise ConfigError(f"only 2D and 3D volumes can be resampled, got {volume.spatial_dims}D")
    array = volume.array[:, :, None, ...]
    return Volume(array, volume.affine, dict(volume.meta), has_channels=volume.has_channels)
