"""DICOM frames -> one Volume: sort along the slice normal, check the spacing, rescale.

Slices are sorted by their position along the normal of their plane (never by file name or
InstanceNumber). Frames sharing a position (time points, echoes) become channels. A stack with
missing slices, non-uniform gaps or a gantry tilt raises :class:`SliceSpacingError` naming the
problem, unless ``allow_irregular=True``: then the stack is resampled (linear interpolation
between neighbouring slices, in-plane shift for tilt) onto a regular, orthogonal grid with the
median gap as slice spacing, and a warning is logged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from medseg3d.errors import DicomError, SliceSpacingError
from medseg3d.io.dicom_frames import Frame, frames_from_file
from medseg3d.io.dicom_series import SeriesInfo, list_dicom_series, select_series
from medseg3d.io.geometry import affine_from_dicom_plane, slice_normal
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

#: A gap may differ from the typical gap by this fraction before the stack counts as irregular.
SPACING_TOLERANCE = 0.1
#: Frames closer than this along the normal (mm) share a position (time points, echoes).
SAME_POSITION_MM = 0.01
#: Shear (mm) of the last slice relative to the first, as a fraction of a pixel, that counts as tilt.
TILT_TOLERANCE = 0.05


def read_dicom(
    path: str | os.PathLike,
    *,
    series: str | int | None = None,
    allow_irregular: bool = False,
) -> Volume:
    """Read a DICOM folder (one series, or the one ``series`` names) or a single DICOM file."""
    path = Path(path)
    all_series = list_dicom_series(path)
    chosen = select_series(all_series, series, path)
    frames, seen = [], set()
    for file in chosen.files:
        for frame in frames_from_file(file):
            key = (frame.sop_uid, frame.frame_number)
            if frame.sop_uid and key in seen:
                logger.warning("%s: duplicate of SOP instance %s, skipped", file, frame.sop_uid)
                continue
            seen.add(key)
            frames.append(frame)
    volume = assemble(frames, source=path, allow_irregular=allow_irregular)
    volume.meta.update(_series_meta(chosen, path))
    return volume


def _series_meta(info: SeriesInfo, path: Path) -> dict:
    return {
        "source": str(path),
        "format": "dicom",
        "modality": info.modality or None,
        "series_uid": info.uid,
        "series_description": info.description,
        "series_number": info.number,
        "study_uid": info.study_uid,
    }


def assemble(frames: list[Frame], *, source: Path, allow_irregular: bool = False) -> Volume:
    """Stack frames of one series into a Volume ``(X=columns, Y=rows, Z=slices[, C])``."""
    shapes = {frame.pixels.shape for frame in frames}
    if len(shapes) > 1:
        raise DicomError(f"slices of different sizes in one series: {sorted(shapes)}", path=source)
    reference = frames[0]
    if reference.orientation is None or reference.position is None:
        return _without_geometry(frames, source)
    orientations = np.array([f.orientation for f in frames])
    different = np.abs(orientations - orientations[0]).max(axis=1) > 1e-4
    if different.any():
        distinct = len({tuple(np.round(o, 3)) for o in orientations})
        raise DicomError(
            f"the series mixes {distinct} slice orientations ({len(frames)} slices): a localizer, "
            "scout or projection series is not a volume; pick another series",
            path=source,
        )
    spacings = {tuple(np.round(f.pixel_spacing, 4)) for f in frames}
    if len(spacings) > 1:
        raise DicomError(
            f"slices with different pixel spacings in one series: {sorted(spacings)}", path=source
        )
    normal = slice_normal(reference.orientation)
    along = np.array([float(np.dot(f.position, normal)) for f in frames])
    order = sorted(range(len(frames)), key=lambda i: (along[i], frames[i].order_key))
    groups: list[list[int]] = []
    for index in order:
        if groups and along[index] - along[groups[-1][0]] < SAME_POSITION_MM:
            groups[-1].append(index)
        else:
            groups.append([index])
    counts = {len(group) for group in groups}
    if len(counts) > 1:
        raise DicomError(
            f"uneven number of images per slice position ({min(counts)} to {max(counts)}): "
            "duplicate or missing images in a multi-phase series",
            path=source,
        )
    groups = [sorted(group, key=lambda i: frames[i].order_key) for group in groups]
    positions = np.array([frames[group[0]].position for group in groups])
    stacked = _stack(frames, groups)  # (X, Y, Z, C) float or int
    meta = {
        "dicom_files": [str(frames[g[0]].file) for g in groups],
        "sop_instance_uids": [frames[g[0]].sop_uid for g in groups],
        "frame_numbers": [frames[g[0]].frame_number for g in groups],
        "slice_positions_mm": [float(along[g[0]]) for g in groups],
    }
    spacing = reference.pixel_spacing
    if len(groups) == 1:
        step = normal * float(reference.thickness or 1.0)
    else:
        step, problem = _check_stack(positions, normal, spacing)
        if problem:
            if not allow_irregular:
                raise SliceSpacingError(
                    f"{problem}. Pass allow_irregular=True (command line: --allow-irregular) "
                    "to resample onto a regular grid",
                    path=source,
                )
            logger.warning("%s: %s; resampling onto a regular grid", source, problem)
            stacked, step = _regularize(stacked, positions, normal, reference)
            meta["regularized"] = problem
            for key in ("dicom_files", "sop_instance_uids", "frame_numbers", "slice_positions_mm"):
                meta[key] = None  # regular slices are interpolated, they match no file
    affine = affine_from_dicom_plane(positions[0], reference.orientation, spacing, step)
    has_channels = stacked.shape[-1] > 1
    array = stacked if has_channels else stacked[..., 0]
    return Volume(np.ascontiguousarray(array), affine, meta, has_channels=has_channels)


def _check_stack(
    positions: np.ndarray, normal: np.ndarray, pixel_spacing
) -> tuple[np.ndarray, str]:
    """The mean slice step (LPS mm) and a description of any gap or tilt problem ("" if none)."""
    count = len(positions)
    along = positions @ normal
    gaps = np.diff(along)
    typical = float(np.median(gaps))
    step_along = (along[-1] - along[0]) / (count - 1)
    deviation = np.abs(along - (along[0] + step_along * np.arange(count)))
    worst = int(np.argmax(np.abs(gaps - typical)))
    problem = ""
    if (
        np.abs(gaps - typical).max() > SPACING_TOLERANCE * typical
        or deviation.max() > SPACING_TOLERANCE * typical
    ):
        missing = max(0, round(gaps[worst] / typical) - 1)
        hint = f" ({missing} slice(s) missing?)" if missing else ""
        problem = (
            f"non-uniform slice spacing: gap of {gaps[worst]:.4g} mm between slices {worst} and "
            f"{worst + 1} (at {along[worst]:.2f} and {along[worst + 1]:.2f} mm along the normal) "
            f"where the typical gap is {typical:.4g} mm{hint}"
        )
    shear = (positions - positions[0]) - np.outer(along - along[0], normal)
    shift = float(np.linalg.norm(shear, axis=1).max())
    if shift > TILT_TOLERANCE * min(pixel_spacing):
        span = float(along[-1] - along[0])
        angle = float(np.degrees(np.arctan2(shift, abs(span))))
        tilt = f"slices are sheared (gantry tilt of about {angle:.2f} degrees, non-orthogonal slice stack)"
        problem = f"{problem}; {tilt}" if problem else tilt
    return normal * step_along, problem


def _stack(frames: list[Frame], groups: list[list[int]]) -> np.ndarray:
    """Rescaled voxels ``(X, Y, Z, C)``: C = frames per position, or colour samples."""
    slopes = np.array([frames[i].slope for group in groups for i in group])
    intercepts = np.array([frames[i].intercept for group in groups for i in group])
    first = frames[groups[0][0]].pixels
    identity = np.all(slopes == 1) and np.all(intercepts == 0)
    dtype = first.dtype if identity else _rescaled_dtype(frames, groups, slopes, intercepts)
    samples = first.shape[2] if first.ndim == 3 else 1
    per_position = len(groups[0])
    if samples > 1 and per_position > 1:
        raise DicomError("multi-phase colour series are not supported", path=frames[0].file)
    channels = max(samples, per_position)
    out = np.empty((first.shape[1], first.shape[0], len(groups), channels), dtype=dtype)
    for z, group in enumerate(groups):
        for c, index in enumerate(group):
            frame = frames[index]
            values = frame.pixels if identity else frame.pixels * frame.slope + frame.intercept
            values = np.swapaxes(values, 0, 1)  # (rows, columns) -> (X=columns, Y=rows)
            if samples > 1:
                out[:, :, z, :] = values
            else:
                out[:, :, z, c] = values
    return out


def _rescaled_dtype(frames, groups, slopes, intercepts) -> np.dtype:
    whole = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if not whole:
        return np.dtype(np.float32)
    low = min(
        int(frames[i].pixels.min()) * frames[i].slope + frames[i].intercept
        for g in groups
        for i in g
    )
    high = max(
        int(frames[i].pixels.max()) * frames[i].slope + frames[i].intercept
        for g in groups
        for i in g
    )
    for dtype in (np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= min(low, high) and max(low, high) <= info.max:
            return np.dtype(dtype)
    return np.dtype(np.float32)


def _regularize(stacked: np.ndarray, positions: np.ndarray, normal: np.ndarray, reference: Frame):
    """Resample an irregular or sheared stack onto slice 0's in-plane grid, evenly spaced along the normal."""
    from scipy import ndimage

    along = positions @ normal
    gap = float(np.median(np.diff(along)))
    count = int(round((along[-1] - along[0]) / gap)) + 1
    targets = along[0] + gap * np.arange(count)
    row_dir, col_dir = reference.orientation[:3], reference.orientation[3:]
    spacing = reference.pixel_spacing
    shifts = [
        (
            float(np.dot(positions[0] - p, row_dir) / spacing[1]),
            float(np.dot(positions[0] - p, col_dir) / spacing[0]),
        )
        for p in positions
    ]
    source = stacked.astype(np.float32)
    fill = float(source.min())
    out = np.empty(source.shape[:2] + (count, source.shape[3]), dtype=np.float32)

    def in_plane(k: int) -> np.ndarray:
        a, b = shifts[k]
        if abs(a) < 1e-3 and abs(b) < 1e-3:
            return source[:, :, k]
        return ndimage.shift(source[:, :, k], (-a, -b, 0), order=1, mode="constant", cval=fill)

    for m, target in enumerate(targets):
        k = int(np.clip(np.searchsorted(along, target, side="right") - 1, 0, len(along) - 2))
        weight = float(np.clip((target - along[k]) / (along[k + 1] - along[k]), 0.0, 1.0))
        out[:, :, m] = (1 - weight) * in_plane(k) + weight * in_plane(k + 1)
    if np.issubdtype(stacked.dtype, np.integer):
        out = np.round(out).astype(stacked.dtype)
    return out, normal * gap


def _without_geometry(frames: list[Frame], source: Path) -> Volume:
    if len(frames) > 1:
        raise DicomError(
            f"{len(frames)} images without ImagePositionPatient/ImageOrientationPatient: "
            "cannot stack them into a volume",
            path=source,
        )
    frame = frames[0]
    logger.warning(
        "%s: no patient geometry in the file; using an axial identity orientation", source
    )
    orientation = np.array([1.0, 0, 0, 0, 1.0, 0])
    stacked = _stack(frames, [[0]])
    affine = affine_from_dicom_plane(
        (0, 0, 0), orientation, frame.pixel_spacing, (0, 0, frame.thickness or 1.0)
    )
    has_channels = stacked.shape[-1] > 1
    array = stacked if has_channels else stacked[..., 0]
    meta = {
        "geometry_missing": True,
        "dicom_files": [str(frame.file)],
        "sop_instance_uids": [frame.sop_uid],
    }
    return Volume(np.ascontiguousarray(array), affine, meta, has_channels=has_channels)
