"""NIfTI / MHA / NRRD round trips with oblique affines, flipped axes and anisotropic spacing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from io_helpers import oblique_affine

from medseg3d.errors import OutputError, ShapeError
from medseg3d.io import Volume, check_single_channel, load_volume, save_volume
from medseg3d.io.geometry import sitk_affine

AFFINES = {
    "oblique": oblique_affine(),
    "flipped": oblique_affine(angles=(0, 0, 0), flips=(-1, 1, -1), spacing=(0.7, 0.7, 3.0)),
    "permuted": np.array([[0, 0, 1.5, 10], [-0.9, 0, 0, 20], [0, 2.2, 0, -30], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("name", sorted(AFFINES))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_round_trip_keeps_affine_and_voxels(tmp_path, rng, name, suffix):
    array = rng.normal(size=(6, 5, 4)).astype(np.float32)
    volume = Volume(array, AFFINES[name])
    path = save_volume(volume, tmp_path / f"image{suffix}")
    loaded = load_volume(path)
    assert np.allclose(loaded.affine, AFFINES[name], atol=1e-5)
    assert loaded.array.shape == array.shape and np.array_equal(loaded.array, array)
    assert loaded.orientation == volume.orientation


def test_nifti_written_by_nibabel_reads_the_same_through_simpleitk(tmp_path, rng):
    affine = oblique_affine(flips=(-1, 1, 1))
    array = rng.integers(0, 100, (5, 6, 7)).astype(np.int16)
    nib.save(nib.Nifti1Image(array, affine), tmp_path / "a.nii.gz")
    ours = load_volume(tmp_path / "a.nii.gz")
    image = sitk.ReadImage(str(tmp_path / "a.nii.gz"))
    assert np.allclose(ours.affine, sitk_affine(image), atol=1e-4)
    assert np.array_equal(ours.array, np.transpose(sitk.GetArrayFromImage(image), (2, 1, 0)))


def test_label_map_header_and_dtype(tmp_path):
    mask = np.zeros((4, 4, 3), dtype=np.int64)
    mask[1:3, 1:3, 1] = 2
    reference = Volume(np.zeros((4, 4, 3), np.float32), oblique_affine())
    path = save_volume(mask, tmp_path / "mask.nii.gz", reference=reference)
    image = nib.load(path)
    assert image.get_data_dtype() == np.uint8
    assert int(image.header["intent_code"]) == 1002  # NIFTI_INTENT_LABEL
    assert image.header.get_slope_inter() in ((1.0, 0.0), (None, None))
    assert np.allclose(image.affine, reference.affine, atol=1e-5)
    loaded = load_volume(path)
    assert loaded.meta["is_label"] and np.array_equal(loaded.array, mask)
    big = mask.copy()
    big[0, 0, 0] = 300
    assert (
        nib.load(save_volume(big, tmp_path / "big.nii.gz", reference=reference)).get_data_dtype()
        == np.uint16
    )


def test_integer_ct_image_from_file_stays_an_image(tmp_path, rng):
    ct = Volume(rng.integers(-1024, 2000, (4, 4, 3)).astype(np.int16), np.eye(4))
    first = save_volume(ct, tmp_path / "ct.nii.gz")
    loaded = load_volume(first)
    second = save_volume(loaded, tmp_path / "ct2.nii.gz")
    assert nib.load(second).get_data_dtype() == np.int16
    assert int(nib.load(second).header["intent_code"]) == 0


def test_four_d_input_becomes_channels(tmp_path, rng):
    array = rng.normal(size=(4, 5, 3, 2)).astype(np.float32)
    nib.save(nib.Nifti1Image(array, oblique_affine()), tmp_path / "4d.nii.gz")
    volume = load_volume(tmp_path / "4d.nii.gz")
    assert volume.has_channels and volume.num_channels == 2 and volume.spatial_shape == (4, 5, 3)
    assert volume.channel_first().shape == (2, 4, 5, 3)
    again = load_volume(save_volume(volume, tmp_path / "again.nii.gz"))
    assert again.has_channels and np.array_equal(again.array, array)
    with pytest.raises(
        ShapeError,
        match=r"4d.nii.gz: a label map needs a single-channel 3D volume, but it has 2 channels",
    ):
        check_single_channel(volume, what="a label map")
    check_single_channel(volume.with_array(array[..., 0]))


def test_save_refuses_to_overwrite_the_reference_and_wrong_shapes(tmp_path, rng):
    path = save_volume(
        Volume(rng.normal(size=(4, 4, 3)).astype(np.float32), np.eye(4)), tmp_path / "in.nii.gz"
    )
    reference = load_volume(path)
    before = path.read_bytes()
    with pytest.raises(OutputError, match="overwrite"):
        save_volume(np.zeros((4, 4, 3), np.uint8), path, reference=reference)
    assert path.read_bytes() == before
    with pytest.raises(OutputError, match="reversed"):
        save_volume(np.zeros((3, 4, 4), np.uint8), tmp_path / "x.nii.gz", reference=reference)
    with pytest.raises(OutputError, match="reference"):
        save_volume(np.zeros((4, 4, 3), np.uint8), tmp_path / "x.nii.gz")
    with pytest.raises(OutputError, match="format"):
        save_volume(reference, tmp_path / "x.png")
    assert not list(tmp_path.glob(".medseg3d-tmp-*"))


def test_mhd_with_raw_companion_written_by_simpleitk(tmp_path, rng):
    array = rng.normal(size=(5, 4, 3)).astype(np.float32)
    image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)))
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetSpacing((0.5, 0.7, 2.0))
    image.SetDirection((0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(tmp_path / "image.mhd"))
    volume = load_volume(tmp_path / "image.mhd")
    assert np.array_equal(volume.array, array)
    assert np.allclose(volume.affine, sitk_affine(image)) and volume.orientation == ("A", "L", "S")
    with pytest.raises(OutputError, match="format"):
        save_volume(volume, tmp_path / "out.mhd")
