"""Preprocessing and its inverse: geometry checked against world coordinates, exact restore."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg3d.data import (
    Plan,
    RestoreInfo,
    make_ct_like_case,
    make_ellipsoid_case,
    normalize_channel,
    preprocess,
    restore_labels,
    restore_probabilities,
)
from medseg3d.data.synthetic import make_affine, world_coordinates
from medseg3d.errors import ShapeError
from medseg3d.io import Volume

CT_NORM = {"scheme": "ct", "clip": [-200.0, 300.0], "mean": 80.0, "std": 50.0}


def _plan(spacing, normalization=None, channels=1, dims=3, interpolation="linear"):
    return Plan(
        spatial_dims=dims,
        target_spacing=list(spacing),
        normalization=normalization or [{"scheme": "none"}] * channels,
        patch_size=[16] * dims,
        labels={"background": 0, "liver": 1, "kidney": 2},
        num_channels=channels,
        channel_names=["CT"] * channels,
        orientation="RAS" if dims == 3 else None,
        image_interpolation=interpolation,
    )


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_preprocessed_voxels_sit_where_the_affine_says():
    """A linear function of world position survives reorientation and resampling exactly."""
    shape, spacing = (20, 18, 14), (3.0, 2.5, 4.0)
    affine = make_affine(shape, spacing, "PIL", rotation_deg=(12, -8, 15), center=(10, -20, 30))
    x, y, z = world_coordinates(shape, affine)
    field = (0.5 * x - 0.3 * y + 0.2 * z).astype(np.float32)
    result = preprocess(Volume(field, affine), _plan((2.0, 3.5, 3.0)))
    assert "".join(nib.aff2axcodes(result.restore.affine)) == "RAS"
    spacing_out = np.linalg.norm(result.restore.affine[:3, :3], axis=0)
    np.testing.assert_allclose(spacing_out, (2.0, 3.5, 3.0), rtol=0.1)
    px, py, pz = world_coordinates(result.image.shape[1:], result.restore.affine)
    expected = 0.5 * px - 0.3 * py + 0.2 * pz
    inner = (slice(2, -2),) * 3  # the edge voxels use edge values (mode "nearest")
    np.testing.assert_allclose(result.image[0][inner], expected[inner], atol=1e-3)


@pytest.mark.parametrize("orientation", ["LPS", "SLP", "RAS"])
def test_restore_is_exact_when_only_the_orientation_changes(orientation):
    image, label = make_ct_like_case(
        (20, 24, 16), (12.0, 12.0, 12.0), seed=1, orientation=orientation
    )
    result = preprocess(image, _plan((12.0, 12.0, 12.0), [CT_NORM]), label)
    restored = restore_labels(result.label, result.restore)
    assert restored.spatial_shape == label.spatial_shape
    np.testing.assert_array_equal(restored.affine, image.affine)
    np.testing.assert_array_equal(restored.array, label.array)
    # and the normalisation is nnU-Net's CT formula, voxel by voxel
    back = restore_probabilities(result.image, result.restore).array[..., 0]
    expected = (np.clip(image.array.astype(np.float32), -200, 300) - 80) / 50
    np.testing.assert_allclose(back, expected, rtol=1e-6, atol=1e-6)


def test_restore_onto_an_oblique_anisotropic_grid():
    image, label = make_ct_like_case(
        (40, 36, 20), (6.0, 6.5, 11.0), seed=2, oblique=True, orientation="LPS"
    )
    result = preprocess(image, _plan((9.0, 9.0, 8.0), [CT_NORM]), label)
    assert result.label.dtype == np.uint8 and result.label.shape == result.image.shape
    for kind in ("onehot", "nearest"):
        restored = restore_labels(result.label[0], result.restore, kind=kind)
        assert restored.spatial_shape == image.spatial_shape
        np.testing.assert_allclose(restored.affine, image.affine, atol=1e-5)
        assert _dice(restored.array == 1, label.array == 1) > 0.9
    probabilities = np.stack([(result.label[0] == k).astype(np.float32) for k in range(3)])
    restored = restore_probabilities(probabilities, result.restore)
    assert restored.array.shape == (*image.spatial_shape, 3)
    np.testing.assert_allclose(restored.array.sum(-1), 1.0, atol=1e-5)
    assert _dice(restored.array.argmax(-1) == 1, label.array == 1) > 0.9


def test_restore_info_round_trips_through_plain_types():
    image, label = make_ct_like_case((16, 16, 12), (15.0, 15.0, 12.0), seed=0, orientation="LPS")
    restore = preprocess(image, _plan((10.0, 10.0, 10.0), [CT_NORM]), label).restore
    again = RestoreInfo.from_dict(
        __import__("json").loads(__import__("json").dumps(restore.to_dict()))
    )
    assert again.shape == restore.shape
    np.testing.assert_array_equal(again.affine, restore.affine)


def test_multichannel_inputs_and_errors():
    image, label = make_ellipsoid_case((16, 16, 12), seed=0)
    other = image.with_array(image.array * 2)
    plan = _plan((1.0, 1.0, 1.0), [{"scheme": "zscore_nonzero"}, {"scheme": "none"}], channels=2)
    result = preprocess([image, other], plan, label)
    assert result.image.shape == (2, 16, 16, 12)
    np.testing.assert_allclose(result.image[1], other.array)
    stacked = Volume(np.stack([image.array, other.array], -1), image.affine, has_channels=True)
    np.testing.assert_array_equal(preprocess(stacked, plan).image, result.image)
    with pytest.raises(ShapeError, match="expects 2"):
        preprocess(image, plan)
    moved = Volume(other.array, other.affine.copy())
    moved.affine[0, 3] += 1.0
    with pytest.raises(ShapeError, match="geometry"):
        preprocess([image, moved], plan)
    with pytest.raises(ShapeError, match="shape"):
        preprocess(
            image, _plan((1.0, 1.0, 1.0)), Volume(np.zeros((4, 4, 4), np.uint8), image.affine)
        )


def test_two_dimensional_plan_keeps_the_axis_order():
    image, label = make_ellipsoid_case((32, 24), seed=0, spacing=(1.0, 1.0))
    result = preprocess(image, _plan((2.0, 2.0), dims=2), label)
    assert result.image.shape == (1, 16, 12) and result.label.shape == (1, 16, 12)
    restored = restore_labels(result.label, result.restore)
    assert restored.spatial_shape == (32, 24)
    assert _dice(restored.array == 1, label.array == 1) > 0.8


def test_normalization_schemes():
    data = np.array([[0.0, 1.0], [2.0, 3.0]], dtype=np.float32)
    out = normalize_channel(data, {"scheme": "zscore_nonzero"})
    assert out[0, 0] == 0 and out[data != 0].mean() == pytest.approx(0, abs=1e-6)
    assert out[data != 0].std() == pytest.approx(1, abs=1e-5)
    out = normalize_channel(data, {"scheme": "zscore"})
    assert out.mean() == pytest.approx(0, abs=1e-6) and out.std() == pytest.approx(1, abs=1e-5)
    np.testing.assert_allclose(normalize_channel(data, {"scheme": "rescale"}), data / 3)
    out = normalize_channel(np.array([-1000.0, 60.0, 2000.0]), CT_NORM)
    np.testing.assert_allclose(out, [(-200 - 80) / 50, (60 - 80) / 50, (300 - 80) / 50])
    assert out.dtype == np.float32
