"""Helpers for I/O tests: oblique affines and DICOM series written by SimpleITK."""

from __future__ import annotations

import locale
import os
from pathlib import Path

import numpy as np


def pydicom_test_files() -> Path:
    """The real scanner files shipped inside pydicom (``pydicom/data/test_files``)."""
    import pydicom.data

    return Path(os.path.dirname(pydicom.data.__file__)) / "test_files"


def rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """A rotation matrix from three angles in radians."""
    cx, sx, cy, sy, cz, sz = np.cos(ax), np.sin(ax), np.cos(ay), np.sin(ay), np.cos(az), np.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def oblique_affine(
    spacing=(0.8, 1.1, 2.5), angles=(0.3, -0.2, 0.5), origin=(-40.2, 17.5, 63.1), flips=(1, 1, 1)
):
    affine = np.eye(4)
    affine[:3, :3] = rotation(*angles) * np.asarray(spacing) * np.asarray(flips)
    affine[:3, 3] = origin
    return affine


def write_sitk_series(
    array_xyz: np.ndarray, affine_ras: np.ndarray, folder: Path, shuffle_names: bool = True
) -> list[Path]:
    """Write an int16 volume as a DICOM series with SimpleITK (after the SimpleITK example
    "Dicom Series From Array"): IPP/IOP from the image geometry, one file per slice.
    File names are shuffled so that name order is not slice order."""
    import SimpleITK as sitk

    from medseg3d.io.geometry import set_sitk_geometry

    image = sitk.GetImageFromArray(np.transpose(array_xyz, (2, 1, 0)).astype(np.int16))
    set_sitk_geometry(image, affine_ras)
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    series_uid = "1.2.826.0.1.3680043.2.1125.1." + str(abs(hash(str(folder))) % 10**12)
    tags = [
        ("0008|0031", "120000"),
        ("0008|0021", "20240101"),
        ("0008|0060", "CT"),
        ("0020|000e", series_uid),
        ("0020|000d", series_uid + ".1"),
        ("0020|0037", "\\".join(f"{v:.10g}" for v in (*direction[0::3], *direction[1::3]))),
        ("0008|103e", "sitk oblique"),
        ("0010|0020", "medseg3d"),
    ]
    saved_locale = locale.setlocale(locale.LC_ALL)  # GDCM's DICOM writer switches it to "C"
    try:
        return _write_slices(
            image, writer, tags, series_uid, folder, array_xyz.shape[2], shuffle_names
        )
    finally:
        locale.setlocale(locale.LC_ALL, saved_locale)


def _write_slices(image, writer, tags, series_uid, folder, count, shuffle_names) -> list[Path]:
    order = np.random.default_rng(1).permutation(count) if shuffle_names else np.arange(count)
    paths = []
    for k in range(count):
        slice_image = image[:, :, k]
        for tag, value in tags:
            slice_image.SetMetaData(tag, value)
        slice_image.SetMetaData("0008|0018", f"{series_uid}.{k + 100}")
        slice_image.SetMetaData(
            "0020|0032",
            "\\".join(f"{v:.10g}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
        )
        slice_image.SetMetaData("0020|0013", str(count - k))  # InstanceNumber reversed on purpose
        path = folder / f"img{order[k]:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_image)
        paths.append(path)
    return paths


def seg_labels(seg, scan) -> np.ndarray:
    """The SEG's label map on ``scan``'s grid, each frame placed by its own plane position."""
    labels = np.zeros(scan.spatial_shape, dtype=np.uint8)
    pixels = seg.pixel_array.reshape(-1, *seg.pixel_array.shape[-2:])
    for frame_index, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        identification = item.get("SegmentIdentificationSequence") or (
            seg.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence
        )
        number = identification[0].ReferencedSegmentNumber
        position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        k = int(round(np.linalg.solve(scan.affine, np.append(position * [-1, -1, 1], 1.0))[2]))
        labels[:, :, k][pixels[frame_index].T > 0] = number
    return labels
