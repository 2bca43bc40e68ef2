"""Every bad input raises a MedsegError subclass naming the file and the problem."""

from __future__ import annotations

import gzip
import shutil

import nibabel as nib
import numpy as np
import pytest
from io_helpers import oblique_affine

from medseg3d.errors import (
    DicomError,
    FileNotFoundMedsegError,
    InvalidVoxelError,
    MedsegError,
    MultipleSeriesError,
    SliceSpacingError,
    UnreadableFileError,
)
from medseg3d.io import (
    Volume,
    check_finite,
    check_label_values,
    load_volume,
    save_volume,
    write_dicom_series,
)


def make_bad_inputs(root, pydicom_files) -> dict:
    """name -> (path, expected error class, words the message must contain)."""
    root.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.arange(4000, dtype=np.float32).reshape(20, 20, 10), np.eye(4))
    good = root / "good.nii.gz"
    nib.save(image, good)
    truncated = root / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    text = root / "text.nii.gz"
    text.write_text("this is not an image\n")
    plain_text_gz = root / "notnifti.nii.gz"
    plain_text_gz.write_bytes(gzip.compress(b"hello world, not a NIfTI header" * 20))
    (root / "empty").mkdir(exist_ok=True)
    no_dicom = root / "no_dicom"
    no_dicom.mkdir(exist_ok=True)
    (no_dicom / "notes.txt").write_text("nothing to see")
    (no_dicom / "fake.dcm").write_bytes(b"\x00" * 300)
    several = root / "several"
    if not several.exists():
        shutil.copytree(pydicom_files / "dicomdirtests" / "98892001", several)
    missing = root / "missing"
    if not missing.exists():
        paths = write_dicom_series(Volume(np.zeros((4, 4, 6), np.int16), oblique_affine()), missing)
        paths[2].unlink()
    nan = root / "nan.nii.gz"
    with_nan = np.ones((4, 4, 4), np.float32)
    with_nan[1, 2, 3] = np.nan
    with_nan[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(with_nan, np.eye(4)), nan)
    truncated_dicom = root / "MR_truncated.dcm"
    shutil.copy(pydicom_files / "MR_truncated.dcm", truncated_dicom)
    return {
        "missing path": (root / "does_not_exist.nii.gz", FileNotFoundMedsegError, "no such file"),
        "truncated nii.gz": (truncated, UnreadableFileError, "truncated"),
        "text named nii.gz": (text, UnreadableFileError, "gzip"),
        "gzip of text": (plain_text_gz, UnreadableFileError, "NIfTI"),
        "empty folder": (root / "empty", DicomError, "empty"),
        "folder without DICOM": (no_dicom, DicomError, "no DICOM"),
        "several series": (several, MultipleSeriesError, "2 DICOM series"),
        "missing slices": (missing, SliceSpacingError, "missing"),
        "NaN and Inf voxels": (nan, InvalidVoxelError, "1 NaN and 1 Inf"),
        "truncated DICOM": (truncated_dicom, UnreadableFileError, "pixel data"),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, pydicom_files=None):
    from io_helpers import pydicom_test_files

    return make_bad_inputs(tmp_path_factory.mktemp("bad"), pydicom_test_files())


@pytest.mark.parametrize(
    "name",
    [
        "missing path",
        "truncated nii.gz",
        "text named nii.gz",
        "gzip of text",
        "empty folder",
        "folder without DICOM",
        "several series",
        "missing slices",
        "NaN and Inf voxels",
        "truncated DICOM",
    ],
)
def test_bad_input_raises_a_one_line_error_naming_the_file(bad_inputs, name):
    path, error_class, words = bad_inputs[name]
    with pytest.raises(error_class) as caught:
        load_volume(path)
    message = str(caught.value)
    assert isinstance(caught.value, MedsegError)
    assert str(path) in message and words in message and "\n" not in message


def test_non_integer_label_map(tmp_path):
    labels = np.zeros((4, 4, 4), np.float32)
    labels[1, 1, 1] = 0.5
    reference = Volume(np.zeros((4, 4, 4), np.float32), np.eye(4), {"source": "scan.nii.gz"})
    with pytest.raises(InvalidVoxelError, match="non-integer"):
        check_label_values(Volume(labels, np.eye(4), {"source": "labels.nii.gz"}))
    with pytest.raises(
        InvalidVoxelError, match=r"out.nii.gz: label map has 1 non-integer voxels \(e.g. 0.5\)"
    ):
        save_volume(labels, tmp_path / "out.nii.gz", reference=reference, is_label=True)
    assert not (tmp_path / "out.nii.gz").exists()
    with pytest.raises(InvalidVoxelError, match="negative"):
        check_label_values(np.array([[-1, 0]]))
    assert list(check_label_values(np.array([0.0, 2.0, 2.0]))) == [0, 2]


def test_check_finite_passes_clean_images_and_integer_arrays():
    check_finite(np.zeros((2, 2), np.float32))
    check_finite(np.zeros((2, 2), np.int16))
    with pytest.raises(InvalidVoxelError, match="NaN"):
        check_finite(np.array([np.nan], np.float32))


def test_a_series_choice_on_a_single_image_file_is_refused(tmp_path):
    import nibabel as nib

    from medseg3d.errors import ConfigError

    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), path)
    with pytest.raises(ConfigError, match="picks a series in a DICOM folder"):
        load_volume(path, series="5")


def test_a_dicom_image_without_series_uid_is_named_as_such(pydicom_files):
    from medseg3d.errors import DicomError

    with pytest.raises(DicomError, match="without SeriesInstanceUID"):
        load_volume(pydicom_files / "JPEGLSNearLossless_16.dcm")
