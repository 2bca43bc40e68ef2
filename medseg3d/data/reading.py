"""Reading a case's files into Volumes (through :func:`medseg3d.io.load_volume`)."""

from __future__ import annotations

import os

from medseg3d.data.dataset import Case
from medseg3d.io import load_volume
from medseg3d.io.volume import Volume


def read_volume(path: str | os.PathLike, *, check: bool = True) -> Volume:
    """Read one image or label file (NIfTI, MHA/NRRD, DICOM folder) with its geometry;
    ``check`` rejects NaN/Inf voxels."""
    return load_volume(path, check=check)


def read_case(case: Case) -> tuple[list[Volume], Volume | None]:
    """The case's channels as a list of single-channel Volumes, and its label (or None).

    A multi-channel file (an MSD 4D image, channels last) is split into its channels.
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
