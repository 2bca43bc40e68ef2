"""Writing DICOM: series from an oblique float volume, and DICOM SEG referencing the series."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from io_helpers import oblique_affine, seg_labels

from medseg3d.errors import OutputError
from medseg3d.io import Volume, load_volume, save_volume, write_dicom_seg, write_dicom_series
from medseg3d.io.geometry import sitk_affine


def test_series_round_trip_and_simpleitk_agrees(tmp_path, rng):
    values = rng.normal(40.0, 300.0, size=(7, 6, 5))
    volume = Volume(values, oblique_affine(flips=(1, -1, 1)))
    paths = write_dicom_series(
        volume, tmp_path / "series", modality="MR", series_description="oblique"
    )
    assert len(paths) == 5 and not list((tmp_path / "series").glob(".medseg3d-tmp-*"))
    loaded = load_volume(tmp_path / "series")
    slope = float(pydicom.dcmread(paths[0]).RescaleSlope)
    # the y flip makes the grid left-handed: slices come back along the normal, i.e. reversed
    assert loaded.array.dtype == np.float32
    assert np.abs(loaded.array - values[:, :, ::-1]).max() <= slope
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "series")))
    image = reader.Execute()
    assert np.allclose(sitk_affine(image), loaded.affine, atol=1e-5)
    assert np.allclose(
        np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)), loaded.array, atol=1e-3
    )
    assert np.allclose(loaded.affine[:, 3], volume.affine @ [0, 0, 4, 1], atol=1e-5)
    assert loaded.meta["modality"] == "MR" and loaded.meta["series_description"] == "oblique"


def test_integer_ct_is_stored_exactly(tmp_path, rng):
    hu = rng.integers(-1024, 3000, size=(5, 4, 3)).astype(np.int16)
    write_dicom_series(Volume(hu, oblique_affine()), tmp_path / "ct")
    loaded = load_volume(tmp_path / "ct")
    assert loaded.array.dtype == np.int16 and np.array_equal(loaded.array, hu)
    assert np.allclose(loaded.affine, oblique_affine(), atol=1e-5)


def test_mask_on_a_dicom_series_as_nifti_and_dicom_seg(tmp_path, rng):
    import highdicom as hd

    write_dicom_series(
        Volume(rng.integers(0, 500, (8, 6, 4)).astype(np.int16), oblique_affine()), tmp_path / "ct"
    )
    scan = load_volume(tmp_path / "ct")
    mask = np.zeros(scan.spatial_shape, dtype=np.uint8)
    mask[2:5, 1:4, 1:3] = 1
    mask[5:7, 3:5, 2:4] = 2
    nifti = load_volume(save_volume(mask, tmp_path / "mask.nii.gz", reference=scan))
    assert np.allclose(nifti.affine, scan.affine, atol=1e-5) and np.array_equal(nifti.array, mask)
    path = write_dicom_seg(mask, scan, tmp_path / "mask_seg.dcm", labels={1: "liver", 2: "tumour"})
    seg = hd.seg.segread(path)
    assert seg.SeriesInstanceUID != scan.meta["series_uid"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == scan.meta["series_uid"]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "tumour"]
    volume = seg.get_volume(combine_segments=True)  # highdicom places frames by their geometry
    assert np.array_equal(seg_labels(seg, scan), mask) and volume is not None


def test_an_empty_mask_is_a_seg_with_empty_segments(tmp_path, rng):
    import highdicom as hd

    write_dicom_series(
        Volume(rng.integers(0, 500, (6, 5, 3)).astype(np.int16), oblique_affine()), tmp_path / "ct"
    )
    scan = load_volume(tmp_path / "ct")
    empty = np.zeros(scan.spatial_shape, np.uint8)
    seg = hd.seg.segread(write_dicom_seg(empty, scan, tmp_path / "s.dcm", labels={1: "liver"}))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver"]
    assert seg.pixel_array.max() == 0
    with pytest.raises(OutputError, match="empty and no label names"):
        write_dicom_seg(empty, scan, tmp_path / "unnamed.dcm")


def test_seg_on_an_enhanced_multiframe_image_references_its_frames(tmp_path, rng):
    import highdicom as hd
    from highdicom.legacy import LegacyConvertedEnhancedCTImage

    paths = write_dicom_series(
        Volume(rng.integers(-500, 500, (8, 6, 4)).astype(np.int16), oblique_affine()),
        tmp_path / "series",
    )
    enhanced = LegacyConvertedEnhancedCTImage(
        [pydicom.dcmread(p) for p in paths],
        series_instance_uid=pydicom.uid.generate_uid(),
        series_number=9,
        sop_instance_uid=pydicom.uid.generate_uid(),
        instance_number=1,
    )
    enhanced.save_as(tmp_path / "enhanced.dcm")
    scan = load_volume(tmp_path / "enhanced.dcm")
    mask = np.zeros(scan.spatial_shape, dtype=np.uint8)
    mask[1:4, 2:5, 0] = 1
    mask[4:7, 1:3, 1:4] = 2
    seg = hd.seg.segread(write_dicom_seg(mask, scan, tmp_path / "seg.dcm", labels={1: "a", 2: "b"}))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == enhanced.SeriesInstanceUID
    referenced = {
        int(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedFrameNumber)
        for item in seg.PerFrameFunctionalGroupsSequence
    }
    assert referenced <= set(range(1, 5))
    assert np.array_equal(seg_labels(seg, scan), mask)


def test_dicom_seg_needs_a_dicom_reference(tmp_path):
    with pytest.raises(OutputError, match="DICOM series"):
        write_dicom_seg(
            np.ones((2, 2, 2), np.uint8), Volume(np.zeros((2, 2, 2)), np.eye(4)), tmp_path / "s.dcm"
        )
