"""NIfTI-1/2 read and write with nibabel (affine exactly as nibabel resolves sform/qform)."""

from __future__ import annotations

import gzip
import logging
import zlib
from pathlib import Path

import numpy as np

from medseg3d.errors import UnreadableFileError
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

#: NIfTI intent code that tells viewers (ITK-SNAP, Slicer, FSLeyes) a volume is a label map.
NIFTI_INTENT_LABEL = 1002
#: sform/qform code "scanner-based anatomical coordinates".
XFORM_SCANNER = 1

_DECODE_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, MemoryError)


def is_nifti(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith((".nii", ".nii.gz", ".img", ".hdr", ".img.gz"))


def read_nifti(path: str | Path) -> Volume:
    """Read a NIfTI file; 4D (X, Y, Z, T) and 5D vector (X, Y, Z, 1, C) data become channels."""
    import nibabel as nib

    try:
        image = nib.load(str(path), mmap=False)
        array = np.asanyarray(image.dataobj)
    except _DECODE_ERRORS + (nib.filebasedimages.ImageFileError,) as error:
        raise UnreadableFileError(_describe(error), path=path) from error
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise UnreadableFileError(f"not a NIfTI image ({type(image).__name__})", path=path)
    header = image.header
    has_channels = False
    if array.ndim == 5 and array.shape[3] == 1:
        array = array[:, :, :, 0, :]
    if array.ndim == 4:
        has_channels = True
    elif array.ndim > 5 or array.ndim < 2:
        raise UnreadableFileError(f"unsupported NIfTI data with shape {array.shape}", path=path)
    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        logger.warning(
            "%s: no sform/qform in the NIfTI header; orientation unknown, using voxel sizes only",
            path,
        )
    intent = int(header.get("intent_code", 0))
    meta = {
        "source": str(path),
        "format": "nifti",
        "nifti_codes": (int(header["sform_code"]), int(header["qform_code"])),
        "description": _text(header.get("descrip")),
    }
    if int(header["sform_code"]) > 0 and int(header["qform_code"]) > 0:
        qform = header.get_qform()
        if not np.allclose(qform, image.affine, atol=1e-5):
            # sform and qform disagree (e.g. FSL/ANTs: sform aligned, qform scanner): readers
            # differ in which they use (nibabel the sform, ITK the qform), so outputs on this grid
            # keep both exactly as they were
            meta["nifti_qform"] = {"affine": image.affine.tolist(), "qform": qform.tolist()}
    if intent == NIFTI_INTENT_LABEL:
        meta["is_label"] = True
    return Volume(array, image.affine, meta, has_channels=has_channels)


def write_nifti(volume: Volume, path: Path, *, is_label: bool) -> None:
    """Write ``volume`` to ``path`` (``.nii`` or ``.nii.gz``) with its exact affine in sform and qform.

    Exception: a volume on the grid of a NIfTI source whose qform differed from its sform gets
    the source's qform back, so every reader (sform- or qform-based) overlays it on the source.

    Label maps get ``intent_code = NIFTI_INTENT_LABEL``, ``scl_slope = 1``, ``scl_inter = 0`` and
    ``cal_min/cal_max`` spanning the labels so viewers show them as a segmentation.
    """
    import nibabel as nib

    array = volume.array
    image = nib.Nifti1Image(array, volume.affine)
    header = image.header
    sform_code, qform_code = volume.meta.get("nifti_codes", (XFORM_SCANNER, XFORM_SCANNER))
    image.set_sform(volume.affine, code=int(sform_code) or XFORM_SCANNER)
    image.set_qform(_qform(volume), code=int(qform_code) or XFORM_SCANNER)
    header.set_xyzt_units(xyz="mm", t="sec")
    header.set_data_dtype(array.dtype)
    if is_label:
        header.set_intent(NIFTI_INTENT_LABEL, name="labels")
        header["scl_slope"] = 1.0
        header["scl_inter"] = 0.0
        header["cal_min"] = 0
        header["cal_max"] = float(array.max()) if array.size else 0.0
    else:
        header.set_slope_inter(1.0, 0.0)
    image.to_filename(str(path))


def _qform(volume: Volume) -> np.ndarray:
    """The qform to write: the source's own when it differed from its sform and ``volume`` is
    still on the source's grid (a mask on its scan), else the affine itself."""
    kept = volume.meta.get("nifti_qform")
    if kept and np.allclose(volume.affine, np.asarray(kept["affine"]), atol=1e-6):
        return np.asarray(kept["qform"], dtype=np.float64)
    return volume.affine


def _describe(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    if isinstance(error, EOFError | zlib.error) or "truncat" in text.lower():
        return f"truncated or corrupt NIfTI file ({text}); re-export or re-download it"
    if isinstance(error, gzip.BadGzipFile) or "gzip" in text.lower():
        return f"not a gzip-compressed NIfTI file ({text})"
    if "file type" in text.lower():
        return "not a NIfTI file (no valid NIfTI header); check the file or its extension"
    return f"cannot read as NIfTI ({text})"


def _text(value) -> str:
    if value is None:
        return ""
    raw = np.asarray(value).item()
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1", "replace")
    return str(raw).strip("\x00 ")
