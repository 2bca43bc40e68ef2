"""Is a case already done? An output counts only if it reads completely and fits its input.

Outputs are written atomically, so a partial file cannot appear under the final name; the check
still reads every voxel (a truncated gzip fails here) and compares the output's grid with the
input's header (shape, and for NIfTI inputs the affine), so a file left by another run, another
model or a copy gone wrong is recomputed instead of trusted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medseg3d.batch.cases import BatchCase
from medseg3d.errors import InputFileError

logger = logging.getLogger(__name__)

#: Largest difference (mm) between the output's and the input's affine entries.
AFFINE_TOLERANCE = 1e-3


@dataclass
class OutputCheck:
    """The result of checking an existing output: ``valid`` with its grid, or the reason not."""

    valid: bool
    reason: str = ""
    labels: np.ndarray | None = None
    spacing: tuple[float, ...] | None = None


def check_output(
    path: str | os.PathLike, case: BatchCase, *, resampled: bool = False
) -> OutputCheck:
    """Read ``path`` completely and compare its grid with the input of ``case``.

    Returns ``OutputCheck(valid=False, reason=...)`` for a missing, unreadable, non-integer or
    mis-shaped output; ``valid=True`` with the label array (``(X, Y, Z)``) and spacing (mm).
    ``resampled``: irregular DICOM stacks are read onto a regular grid (``--allow-irregular``),
    whose slice count the headers cannot tell; their shape is then not compared.
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        return OutputCheck(False, "missing")
    try:
        image = nib.load(str(path))
        labels = np.asarray(image.dataobj)
    except Exception as error:  # noqa: BLE001 - nibabel raises many types for a corrupt file
        return OutputCheck(False, f"unreadable ({type(error).__name__}: {error})")
    if labels.ndim not in (2, 3) or not np.issubdtype(labels.dtype, np.integer):
        return OutputCheck(False, f"not a label map (shape {labels.shape}, {labels.dtype})")
    try:
        expected_shape, expected_affine = (
            (None, None) if resampled and case.dicom else input_grid(case)
        )
    except Exception as error:  # noqa: BLE001 - an unreadable input header: let the case run
        return OutputCheck(False, f"input header unreadable ({type(error).__name__})")
    if expected_affine is not None:
        if tuple(labels.shape) != tuple(expected_shape):
            return OutputCheck(
                False, f"shape {labels.shape} differs from the input's {expected_shape}"
            )
        if not np.allclose(image.affine, expected_affine, atol=AFFINE_TOLERANCE):
            return OutputCheck(False, "affine differs from the input's")
    elif expected_shape is not None and sorted(labels.shape) != sorted(expected_shape):
        return OutputCheck(False, f"shape {labels.shape} does not fit the input's {expected_shape}")
    spacing = tuple(float(s) for s in np.linalg.norm(image.affine[:3, : labels.ndim], axis=0))
    return OutputCheck(True, labels=labels, spacing=spacing)


def input_grid(case: BatchCase) -> tuple[tuple[int, ...] | None, np.ndarray | None]:
    """The input's spatial shape (voxels) and, for NIfTI, its affine, from headers only.

    DICOM and MHA/NRRD inputs give the shape only (their axis order after reading is decided by
    the reader); ``(None, None)`` when it cannot be told cheaply.
    """
    first = case.inputs[0]
    if case.dicom:
        return _dicom_shape(first, case.series), None
    name = first.name.lower()
    if name.endswith((".nii", ".nii.gz", ".hdr", ".img", ".img.gz")):
        import nibabel as nib

        image = nib.load(str(first))
        shape = tuple(int(v) for v in image.shape[:3])
        if len(image.shape) == 2:
            shape = tuple(int(v) for v in image.shape)
        return shape, image.affine
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(first))
    reader.ReadImageInformation()
    return tuple(int(v) for v in reader.GetSize()[:3]), None


def _dicom_shape(folder: Path, series: str | None) -> tuple[int, ...] | None:
    from medseg3d.io.dicom_series import list_dicom_series, read_header, select_series

    info = select_series(list_dicom_series(folder), series, folder)
    header = read_header(info.files[0])
    if header is None:
        raise InputFileError("first file of the series is unreadable", path=info.files[0])
    return (int(header.Columns), int(header.Rows), int(info.num_frames))
