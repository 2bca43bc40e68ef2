"""Reading DICOM: SimpleITK-written oblique series, real scanner files from pydicom, bad stacks."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from io_helpers import oblique_affine, write_sitk_series

from medseg3d.errors import DicomError, MultipleSeriesError, SliceSpacingError
from medseg3d.io import Volume, list_dicom_series, load_volume, reorient, write_dicom_series
from medseg3d.io.dicom_series import select_series
from medseg3d.io.geometry import is_sheared, sitk_affine


def _sitk_series(folder):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    return image, np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))


@pytest.fixture
def volume_xyz(rng):
    return rng.integers(-1000, 2000, (6, 7, 5)).astype(np.int16)


def test_oblique_series_written_by_simpleitk(tmp_path, volume_xyz):
    affine = oblique_affine()
    write_sitk_series(volume_xyz, affine, tmp_path / "series")
    volume = load_volume(tmp_path / "series")
    image, array = _sitk_series(tmp_path / "series")
    assert np.array_equal(volume.array, volume_xyz) and np.array_equal(array, volume_xyz)
    assert np.allclose(volume.affine, sitk_affine(image), atol=1e-5)
    assert np.allclose(volume.affine, affine, atol=1e-5)
    assert volume.meta["modality"] == "CT" and volume.meta["series_description"] == "sitk oblique"
    assert len(volume.meta["dicom_files"]) == 5


def test_left_handed_grid_comes_back_in_the_same_place(tmp_path, volume_xyz):
    affine = oblique_affine(flips=(1, 1, -1))  # slice axis against the plane normal
    write_sitk_series(volume_xyz, affine, tmp_path / "series")
    volume = load_volume(tmp_path / "series")
    expected = reorient(Volume(volume_xyz, affine), "RAS")
    got = reorient(volume, "RAS")
    assert np.allclose(got.affine, expected.affine, atol=1e-5)
    assert np.array_equal(got.array, expected.array)


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
        "JPGExtended.dcm",
        "rtdose.dcm",
    ],
)
def test_real_scanner_files_match_simpleitk(pydicom_files, name):
    volume = load_volume(pydicom_files / name)
    image = sitk.ReadImage(str(pydicom_files / name))
    expected = np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0))
    assert np.array_equal(volume.array, expected)
    reference = sitk_affine(image)
    columns = 3 if volume.spatial_shape[2] > 1 else 2  # one slice: its thickness is a convention
    assert np.allclose(volume.affine[:3, :columns], reference[:3, :columns], atol=1e-4)
    assert np.allclose(volume.affine[:3, 3], reference[:3, 3], atol=1e-4)


def test_ct_values_are_in_hounsfield_units(pydicom_files):
    dataset = pydicom.dcmread(pydicom_files / "CT_small.dcm")
    volume = load_volume(pydicom_files / "CT_small.dcm")
    hu = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
    assert np.array_equal(volume.array[:, :, 0], hu.T)
    assert volume.meta["modality"] == "CT" and volume.orientation == ("L", "P", "S")


def test_dicomdir_series_matches_simpleitk(pydicom_files):
    folder = pydicom_files / "dicomdirtests" / "98892001" / "CT5N"
    volume = load_volume(folder)
    image, array = _sitk_series(folder)
    assert np.array_equal(volume.array, array)
    assert np.allclose(volume.affine, sitk_affine(image), atol=1e-5)


def test_non_uniform_series_raises_or_resamples_with_a_warning(pydicom_files, caplog):
    folder = pydicom_files / "dicomdirtests" / "77654033" / "CT2"
    with pytest.raises(SliceSpacingError, match=r"gap of 202.5 mm .* typical gap is 1.25 mm"):
        load_volume(folder)
    with caplog.at_level(logging.WARNING):
        volume = load_volume(folder, allow_irregular=True)
    assert "non-uniform slice spacing" in caplog.text
    assert volume.spatial_shape == (16, 16, 165)
    assert np.isclose(volume.spacing[2], 1.25) and not is_sheared(volume.affine)
    original = load_volume(folder / "17136")  # a real slice lands exactly on the regular grid
    index = np.linalg.solve(volume.affine, original.affine[:, 3])[:3]
    assert np.allclose(index, np.round(index), atol=1e-3)
    assert np.array_equal(volume.array[:, :, int(round(index[2]))], original.array[:, :, 0])


def test_several_series_are_listed_and_can_be_picked(pydicom_files):
    folder = pydicom_files / "dicomdirtests" / "98892001"
    with pytest.raises(MultipleSeriesError) as error:
        load_volume(folder)
    for info in list_dicom_series(folder):
        assert info.uid in str(error.value) and f"{info.num_frames} slices" in str(error.value)
    assert "Scout" in str(error.value) and str(folder) in str(error.value)
    by_number = load_volume(folder, series=5)
    by_description = load_volume(folder, series="SmartScore - Gated 0.5 sec")
    by_uid = load_volume(folder, series=by_number.meta["series_uid"])
    assert (
        by_number.spatial_shape
        == by_description.spatial_shape
        == by_uid.spatial_shape
        == (16, 16, 5)
    )
    with pytest.raises(DicomError, match="no series matches"):
        load_volume(folder, series="nothing")


def test_mixed_orientations_are_not_a_volume(pydicom_files):
    with pytest.raises(DicomError, match="orientations"):
        load_volume(pydicom_files / "dicomdirtests" / "98892003" / "MR700")


def test_duplicate_file_copies_are_read_once(tmp_path, rng):
    volume = Volume(rng.integers(0, 100, (4, 5, 3)).astype(np.int16), oblique_affine())
    paths = write_dicom_series(volume, tmp_path / "series")
    shutil.copy(paths[1], tmp_path / "series" / "copy of slice 1.dcm")
    loaded = load_volume(tmp_path / "series")
    assert not loaded.has_channels and np.array_equal(loaded.array, volume.array)


def test_missing_slice_is_named(tmp_path, rng):
    volume = Volume(rng.integers(0, 100, (5, 5, 8)).astype(np.int16), oblique_affine())
    paths = write_dicom_series(volume, tmp_path / "series")
    paths[4].unlink()
    with pytest.raises(
        SliceSpacingError, match=r"gap of 5 mm between slices 3 and 4 .*1 slice\(s\) missing"
    ):
        load_volume(tmp_path / "series")


def test_gantry_tilt_is_detected_and_corrected_on_request(tmp_path, rng):
    affine = oblique_affine(angles=(0, 0, 0), spacing=(1.0, 1.0, 2.0))
    array = rng.integers(0, 1000, (8, 6, 4)).astype(np.int16)
    paths = write_dicom_series(Volume(array, affine), tmp_path / "tilted")
    for k, path in enumerate(paths):  # shift slice k by k pixels along the rows: a sheared stack
        dataset = pydicom.dcmread(path)
        position = [float(v) for v in dataset.ImagePositionPatient]
        row = [float(v) for v in dataset.ImageOrientationPatient[:3]]
        dataset.ImagePositionPatient = [f"{p + k * r:.6f}" for p, r in zip(position, row)]
        dataset.save_as(path)
    with pytest.raises(SliceSpacingError, match="gantry tilt of about 26.57 degrees"):
        load_volume(tmp_path / "tilted")
    volume = load_volume(tmp_path / "tilted", allow_irregular=True)
    assert not is_sheared(volume.affine) and volume.spatial_shape == (8, 6, 4)
    for k in range(4):  # regular grid voxel (i, j, k) = source slice k at column i - k
        assert np.array_equal(volume.array[k:, :, k], array[: 8 - k, :, k])


def test_time_points_at_the_same_positions_become_channels(tmp_path, rng):
    affine = oblique_affine()
    phases = [rng.integers(0, 100, (4, 5, 3)).astype(np.int16) for _ in range(2)]
    folder = tmp_path / "dce"
    for phase, array in enumerate(phases):
        paths = write_dicom_series(
            Volume(array, affine), folder / f"phase{phase}", series_uid="1.2.3.4.5"
        )
        for path in paths:
            dataset = pydicom.dcmread(path)
            dataset.TemporalPositionIdentifier = phase + 1
            dataset.save_as(path)
    volume = load_volume(folder)
    assert volume.has_channels and volume.array.shape == (4, 5, 3, 2)
    assert np.array_equal(volume.array[..., 0], phases[0]) and np.array_equal(
        volume.array[..., 1], phases[1]
    )
    assert np.allclose(volume.affine, affine, atol=1e-5)


def test_enhanced_multiframe_geometry_comes_from_functional_groups(tmp_path, rng):
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    affine = oblique_affine()
    array = rng.integers(-500, 500, (6, 5, 4)).astype(np.int16)
    paths = write_dicom_series(Volume(array, affine), tmp_path / "series")
    legacy = [pydicom.dcmread(p) for p in paths]
    enhanced = LegacyConvertedEnhancedCTImage(
        legacy,
        series_instance_uid=pydicom.uid.generate_uid(),
        series_number=9,
        sop_instance_uid=pydicom.uid.generate_uid(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    volume = load_volume(tmp_path / "enhanced.dcm")
    assert np.array_equal(volume.array, array)
    assert np.allclose(volume.affine, affine, atol=1e-5)
    shutil.copy(tmp_path / "enhanced.dcm", tmp_path / "folder.dcm")
    assert np.allclose(load_volume(tmp_path / "folder.dcm").affine, affine, atol=1e-5)


def test_a_series_number_wins_over_a_uid_that_happens_to_end_with_it(pydicom_files):
    folder = pydicom_files / "dicomdirtests"
    listed = list_dicom_series(folder)
    (scout,) = [info for info in listed if info.number == 4]
    others = [i for i in listed if i.uid.endswith("4") and i.uid != scout.uid]
    assert others, "the test needs a series whose UID ends in 4"
    assert select_series(listed, 4, folder).uid == scout.uid  # not the localizer ending in 4
    suffix = ".".join(others[0].uid.split(".")[-2:])  # whole UID components still work
    assert select_series(listed, suffix, folder).uid == others[0].uid
