"""Volume I/O benchmark: medseg3d.io against nibabel / SimpleITK doing the same work.

Run: ``.venv/bin/python tests/io/bench_io.py [--size 256 256 160] [--repeats 3]``.
Prints one Markdown table row per operation (best of ``repeats`` wall-clock seconds).
A CT-like int16 volume (LPS, anisotropic) is written as .nii.gz and as a DICOM series first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from medseg3d.io import (
    Volume,
    load_volume,
    reorient,
    resample_to_grid,
    resample_to_spacing,
    save_volume,
    write_dicom_series,
)
from medseg3d.io.geometry import set_sitk_geometry


def best_of(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def ct_like(shape) -> Volume:
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    body = (x**2 + y**2) < 0.8
    organ = ((x - 0.2) ** 2 + y**2 + z**2) < 0.15
    array = np.where(body, 40, -1000) + np.where(organ, 60, 0) + rng.normal(0, 20, shape)
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])  # LPS axes, anisotropic
    affine[:3, 3] = (200.0, 180.0, -300.0)
    labels = body.astype(np.uint8) + organ.astype(np.uint8)
    return Volume(array.astype(np.int16), affine), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, nargs=3, default=(256, 256, 160))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    volume, labels = ct_like(tuple(args.size))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        nifti = folder / "ct.nii.gz"
        rows.append(
            (
                "save .nii.gz (int16)",
                best_of(lambda: save_volume(volume, nifti), 1),
                best_of(
                    lambda: nib.save(
                        nib.Nifti1Image(volume.array, volume.affine), folder / "nib.nii.gz"
                    ),
                    1,
                ),
                "nibabel",
            )
        )
        rows.append(
            (
                "load .nii.gz",
                best_of(lambda: load_volume(nifti), args.repeats),
                best_of(lambda: sitk.ReadImage(str(nifti)), args.repeats),
                "SimpleITK ReadImage",
            )
        )
        start = time.perf_counter()
        write_dicom_series(volume, folder / "dicom")
        rows.append(
            (f"write DICOM series ({args.size[2]} files)", time.perf_counter() - start, None, "")
        )

        def sitk_series():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder / "dicom")))
            return reader.Execute()

        rows.append(
            (
                "load DICOM series",
                best_of(lambda: load_volume(folder / "dicom"), args.repeats),
                best_of(sitk_series, args.repeats),
                "SimpleITK ImageSeriesReader",
            )
        )
        image = sitk.GetImageFromArray(np.transpose(volume.array, (2, 1, 0)).astype(np.float32))
        set_sitk_geometry(image, volume.affine)
        target = resample_to_spacing(volume, 1.5, kind="nearest")
        grid = sitk.Image(*target.spatial_shape, sitk.sitkFloat32)
        set_sitk_geometry(grid, target.affine)
        for kind, interpolator in (
            ("linear", sitk.sitkLinear),
            ("nearest", sitk.sitkNearestNeighbor),
            ("cubic", sitk.sitkBSpline),
        ):
            rows.append(
                (
                    f"resample_to_spacing 1.5 mm {kind}",
                    best_of(lambda kind=kind: resample_to_spacing(volume, 1.5, kind=kind), 1),
                    best_of(
                        lambda i=interpolator: sitk.Resample(
                            image, grid, sitk.Transform(), i, -1000.0
                        ),
                        1,
                    ),
                    "SimpleITK Resample",
                )
            )
        mask = Volume(labels, volume.affine)
        coarse = resample_to_spacing(mask, 1.5, kind="nearest")
        rows.append(
            (
                "resample_to_spacing onehot (3 labels)",
                best_of(lambda: resample_to_spacing(mask, 1.5, kind="onehot"), 1),
                None,
                "",
            )
        )
        rows.append(
            (
                "resample_to_grid back, nearest",
                best_of(
                    lambda: resample_to_grid(
                        coarse, volume.spatial_shape, volume.affine, kind="nearest"
                    ),
                    1,
                ),
                None,
                "",
            )
        )
        rows.append(
            (
                "reorient LPS -> RAS",
                best_of(lambda: reorient(volume, "RAS"), args.repeats),
                best_of(lambda: sitk.DICOMOrient(image, "LPS"), args.repeats),
                "SimpleITK DICOMOrient",
            )
        )
    print(f"volume {tuple(args.size)} int16, spacing {volume.spacing} mm\n")
    print("| operation | medseg3d (s) | reference (s) | reference |\n|---|---|---|---|")
    for name, ours, theirs, reference in rows:
        theirs_text = "" if theirs is None else f"{theirs:.3f}"
        print(f"| {name} | {ours:.3f} | {theirs_text} | {reference} |")


if __name__ == "__main__":
    main()
