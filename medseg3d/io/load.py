"""``load_volume``: one entry point for NIfTI, ITK formats, DICOM folders and DICOM files."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from medseg3d.errors import ConfigError, FileNotFoundMedsegError, UnreadableFileError
from medseg3d.io.checks import check_finite
from medseg3d.io.dicom_read import read_dicom
from medseg3d.io.dicom_series import looks_like_dicom
from medseg3d.io.itk import ITK_SUFFIXES, has_suffix, read_itk
from medseg3d.io.nifti import is_nifti, read_nifti
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

#: File names the loader recognises (besides DICOM files and folders).
VOLUME_SUFFIXES = (
    ".nii",
    ".nii.gz",
    ".mha",
    ".mhd",
    ".nrrd",
    ".nhdr",
    ".hdr",
    ".img",
    ".gipl",
    ".vtk",
)


def load_volume(
    path: str | os.PathLike,
    *,
    series: str | int | None = None,
    allow_irregular: bool = False,
    check: bool = True,
) -> Volume:
    """Read a volume with its geometry.

    Args:
        path: a ``.nii``/``.nii.gz`` file (nibabel; SimpleITK where nibabel cannot), a
            ``.mha``/``.mhd``/``.nrrd`` file (SimpleITK), a DICOM folder (searched recursively)
            or a single DICOM file (classic or enhanced multi-frame).
        series: for a folder holding several DICOM series, the one to read (SeriesInstanceUID,
            a unique UID suffix, SeriesNumber or SeriesDescription).
        allow_irregular: read a DICOM stack with missing slices, non-uniform gaps or gantry tilt
            by resampling it onto a regular grid (with a warning) instead of raising.
        check: raise :class:`InvalidVoxelError` for NaN/Inf voxels.

    Returns:
        A :class:`Volume`: ``array`` ``(X, Y, Z[, C])`` (DICOM values rescaled, CT in HU), a 4x4
        voxel -> RAS+ mm affine, and ``meta`` (``source``, ``format``, ``modality``; for DICOM
        ``series_uid``, ``series_description``, ``dicom_files``, ``sop_instance_uids``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundMedsegError("no such file or folder", path=path)
    if path.is_dir():
        volume = read_dicom(path, series=series, allow_irregular=allow_irregular)
    elif series is not None and (is_nifti(path) or has_suffix(path, ITK_SUFFIXES)):
        raise ConfigError(
            f"series={series!r} (--series) picks a series in a DICOM folder, but this is a "
            "single image file; drop it or give the DICOM folder",
            path=path,
        )
    elif is_nifti(path):
        volume = _read_nifti_or_itk(path)
    elif has_suffix(path, ITK_SUFFIXES):
        volume = read_itk(path)
    elif looks_like_dicom(path):
        volume = read_dicom(path, allow_irregular=allow_irregular)
    else:
        if path.stat().st_size == 0:
            raise UnreadableFileError("file is empty", path=path)
        raise UnreadableFileError(
            "unknown file type: expected .nii, .nii.gz, .mha, .mhd, .nrrd, a DICOM file or a "
            "DICOM folder",
            path=path,
        )
    volume.meta.setdefault("source", str(path))
    volume.meta.setdefault("modality", None)
    if check:
        check_finite(volume)
    return volume


def _read_nifti_or_itk(path: Path) -> Volume:
    if path.stat().st_size == 0:
        raise UnreadableFileError("file is empty (0 bytes)", path=path)
    try:
        return read_nifti(path)
    except UnreadableFileError as nibabel_error:
        if path.name.lower().endswith(".gz"):
            raise  # SimpleITK would only repeat the decompression failure
        try:
            volume = read_itk(path)
        except UnreadableFileError:
            raise nibabel_error from None
        logger.info("%s: read with SimpleITK (nibabel: %s)", path, nibabel_error.message)
        return volume
