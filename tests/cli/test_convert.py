"""``medseg3d convert`` as a real subprocess: DICOM/MHA/NRRD -> NIfTI with the same geometry."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))

from io_helpers import oblique_affine, pydicom_test_files, write_sitk_series  # noqa: E402

from medseg3d.io import Volume, load_volume, save_volume  # noqa: E402
from medseg3d.io.geometry import sitk_affine  # noqa: E402


def test_convert_dicom_series_to_nifti(cli, tmp_path):
    array = np.random.default_rng(0).integers(-1000, 1000, (6, 5, 4)).astype(np.int16)
    write_sitk_series(array, oblique_affine(), tmp_path / "dicom")
    result = cli("convert", tmp_path / "dicom", tmp_path / "out.nii.gz")
    assert result.returncode == 0, result.stderr
    assert "out.nii.gz" in result.stdout
    image = nib.load(tmp_path / "out.nii.gz")
    assert np.allclose(image.affine, oblique_affine(), atol=1e-5)
    assert (
        np.array_equal(np.asanyarray(image.dataobj), array) and image.get_data_dtype() == np.int16
    )
    assert not list(tmp_path.glob(".medseg3d-tmp-*"))


def test_convert_mha_and_nrrd_keep_simpleitk_geometry(cli, tmp_path):
    for suffix in (".mha",):
        source = save_volume(
            Volume(
                np.arange(60, dtype=np.float32).reshape(5, 4, 3), oblique_affine(flips=(-1, 1, 1))
            ),
            tmp_path / f"in{suffix}",
        )
        result = cli("convert", source, tmp_path / f"out{suffix}.nii.gz")
        assert result.returncode == 0, result.stderr
        converted = load_volume(tmp_path / f"out{suffix}.nii.gz")
        assert np.allclose(converted.affine, sitk_affine(sitk.ReadImage(str(source))), atol=1e-5)


def test_convert_refuses_to_overwrite_its_input_and_bad_labels(cli, tmp_path):
    source = save_volume(
        Volume(np.full((3, 3, 3), 0.5, np.float32), np.eye(4)), tmp_path / "in.nii.gz"
    )
    before = source.read_bytes()
    result = cli("convert", source, source)
    assert (
        result.returncode != 0 and "overwrite" in result.stderr and "Traceback" not in result.stderr
    )
    assert source.read_bytes() == before
    result = cli("convert", "--label", source, tmp_path / "labels.nii.gz")
    assert result.returncode != 0 and "non-integer" in result.stderr
    assert (
        len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "labels.nii.gz").exists()
    )


def test_convert_irregular_series_only_when_allowed(cli, tmp_path):
    folder = pydicom_test_files() / "dicomdirtests" / "77654033" / "CT2"
    result = cli(
        "convert", "--allow-irregular", "--reorient", "RAS", folder, tmp_path / "ct.nii.gz"
    )
    assert result.returncode == 0, result.stderr
    assert load_volume(tmp_path / "ct.nii.gz").orientation == ("R", "A", "S")
