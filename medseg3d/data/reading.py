"""Reading a case's files into Volumes (through :mod:`medseg3d.io`)."""

from __future__ import annotations

import os

import numpy as np

from medseg3d.data.dataset import Case
from medseg3d.io.volume import Volume


def read_volume(path: str | os.PathLike) -> Volume:
    """Read one image or label file (NIfTI, MHA/NRRD, DICOM) with its geometry."""
    try:
        from medseg3d.io import load_volume
    except ImportError:  # medseg3d.io without its reader yet: NIfTI through nibabel
        return _read_nifti(path)
    return load_volume(path)


def read_case(case: Case) -> tuple[list[Volume], Volume | None]:
    """The case's channels as a list of single-channel Volumes, and its label (or None).

    A multi-channel file (MSD 4D image, channels last) is split into its channels.
    """
    channels: list[Volume] = []
    for path in case.images:
        volume = read_volume(path)
        if volume.has_channels:
            channels += [
                volume.with_array(volume.array[..., c]) for c in range(volume.num_channels)
            ]
        else:
            channels.append(volume)
    label = read_volume(case.label) if case.label is not None else None
    return channels, label


def _read_nifti(path: str | os.PathLike) -> Volume:
    import nibabel as nib

    from medseg3d.errors import FileNotFoundMedsegError, UnreadableFileError

    if not os.path.exists(path):
        raise FileNotFoundMedsegError("file not found", path=path)
    try:
        image = nib.load(str(path))
        array = np.asarray(image.dataobj)
    except Exception as error:  # nibabel raises many types for corrupt files
        raise UnreadableFileError(f"cannot read the file ({error})", path=path) from error
    has_channels = array.ndim == 4
    return Volume(array, image.affine, {"source": str(path)}, has_channels=has_channels)
