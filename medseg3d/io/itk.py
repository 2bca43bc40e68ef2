"""MetaImage (``.mha``/``.mhd``), NRRD and other ITK formats with SimpleITK.

SimpleITK arrays are ``(Z, Y, X[, C])`` with LPS geometry; here they become ``(X, Y, Z[, C])``
with a RAS affine (through :mod:`medseg3d.io.geometry`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg3d.errors import OutputError, UnreadableFileError
from medseg3d.io.geometry import set_sitk_geometry, sitk_affine
from medseg3d.io.volume import Volume

#: Extensions read through SimpleITK.
ITK_SUFFIXES = (
    ".mha",
    ".mhd",
    ".nrrd",
    ".nhdr",
    ".nii",
    ".nii.gz",
    ".hdr",
    ".img",
    ".gipl",
    ".vtk",
)
#: Extensions written through SimpleITK (single-file formats only: a ``.mhd``/``.raw`` pair
#: cannot be renamed atomically).
ITK_WRITE_SUFFIXES = (".mha", ".nrrd")


def has_suffix(path: str | Path, suffixes: tuple[str, ...]) -> bool:
    return str(path).lower().endswith(suffixes)


def image_to_volume(image, source: str | None = None) -> Volume:
    """A ``SimpleITK.Image`` (2D, 3D, 4D; scalar or vector pixels) as a :class:`Volume`."""
    import SimpleITK as sitk

    dims = image.GetDimension()
    components = image.GetNumberOfComponentsPerPixel()
    array = sitk.GetArrayFromImage(image)  # (…, Z, Y, X[, C]) reversed axes
    spatial = array.ndim - (1 if components > 1 else 0)
    order = list(range(spatial))[::-1] + ([spatial] if components > 1 else [])
    array = np.ascontiguousarray(np.transpose(array, order))  # (X, Y, Z[, T][, C])
    has_channels = components > 1
    if dims == 4:  # (X, Y, Z, T): time points or channels as the channel axis
        if components > 1:
            raise UnreadableFileError("4D images with vector pixels are not supported", path=source)
        has_channels = True
    meta = {"source": source, "format": "itk"}
    if dims == 2:
        array = array[:, :, None, ...] if array.ndim == 2 + has_channels else array
    return Volume(array, sitk_affine(image), meta, has_channels=has_channels)


def read_itk(path: str | Path) -> Volume:
    """Read any format SimpleITK knows (``.mha``, ``.mhd``, ``.nrrd``, ``.nii``…)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        reason = str(error).strip().splitlines()
        detail = reason[-1] if reason else "unknown error"
        raise UnreadableFileError(f"SimpleITK cannot read it ({detail})", path=path) from error
    volume = image_to_volume(image, source=str(path))
    for key in ("modality", "Modality"):
        if image.HasMetaDataKey(key):
            modality = _modality(image.GetMetaData(key))
            if modality:
                volume.meta["modality"] = modality
    return volume


#: MetaImage's modality codes (``Modality = MET_MOD_CT``) as DICOM Modality values.
_META_MODALITIES = {"CT": "CT", "MR": "MR", "PET": "PT", "SPECT": "NM", "NM": "NM", "US": "US"}


def _modality(value: str) -> str | None:
    """A header's modality as a DICOM Modality value; None when it says nothing
    (SimpleITK writes ``MET_MOD_UNKNOWN`` into every .mha it saves)."""
    text = value.strip().upper()
    if text.startswith("MET_MOD_"):
        return _META_MODALITIES.get(text[len("MET_MOD_") :])
    return text or None


def volume_to_image(volume: Volume):
    """A :class:`Volume` as a ``SimpleITK.Image`` with LPS geometry (channels -> vector pixels)."""
    import SimpleITK as sitk

    array = volume.array
    spatial = volume.spatial_dims
    order = list(range(spatial))[::-1] + ([spatial] if volume.has_channels else [])
    image = sitk.GetImageFromArray(
        np.ascontiguousarray(np.transpose(array, order)), isVector=volume.has_channels
    )
    try:
        set_sitk_geometry(image, volume.affine)
    except ValueError as error:
        raise OutputError(f"{error}; save as NIfTI instead", path=volume.source) from error
    return image


def write_itk(volume: Volume, path: Path) -> None:
    import SimpleITK as sitk

    image = volume_to_image(volume)
    if volume.meta.get("modality"):
        image.SetMetaData("modality", str(volume.meta["modality"]))
    sitk.WriteImage(image, str(path), useCompression=True)
