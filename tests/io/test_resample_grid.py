"""Reorientation and resampling: exact way back, and agreement with SimpleITK's resampler."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from io_helpers import oblique_affine

from medseg3d.errors import ConfigError
from medseg3d.io import Volume, reorient, reorient_back, resample_to_grid, resample_to_spacing
from medseg3d.io.geometry import set_sitk_geometry


def _world(volume: Volume, index) -> np.ndarray:
    return (volume.affine @ np.array([*index, 1.0]))[:3]


@pytest.mark.parametrize("codes", ["RAS", "LPS", "PIR", "SAL"])
def test_reorient_moves_no_voxel_in_space_and_goes_back_exactly(rng, codes):
    volume = Volume(
        rng.normal(size=(4, 5, 6)).astype(np.float32), oblique_affine(flips=(-1, 1, -1))
    )
    turned = reorient(volume, codes)
    assert "".join(turned.orientation) == codes
    # every voxel keeps its world position: find each original voxel in the reoriented array
    for index in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        target = np.linalg.solve(turned.affine, np.append(_world(volume, index), 1.0))[:3]
        assert np.allclose(target, np.round(target), atol=1e-6)
        assert turned.array[tuple(np.round(target).astype(int))] == volume.array[index]
    back = reorient_back(turned)
    assert np.allclose(back.affine, volume.affine, atol=1e-9) and np.array_equal(
        back.array, volume.array
    )


def test_reorient_keeps_channels(rng):
    volume = Volume(
        rng.normal(size=(4, 5, 6, 2)), oblique_affine(flips=(-1, 1, 1)), has_channels=True
    )
    turned = reorient(volume, "RAS")
    assert turned.has_channels and turned.array.shape[-1] == 2 and turned.spatial_shape == (4, 5, 6)


def test_label_round_trip_lands_exactly_on_the_original_grid(rng):
    labels = np.zeros((9, 8, 7), dtype=np.uint8)
    labels[2:6, 3:7, 1:5] = 1
    labels[5:8, 1:3, 2:6] = 2
    volume = Volume(labels, oblique_affine(spacing=(1.0, 1.2, 3.0)))
    fine = resample_to_spacing(volume, (0.5, 0.6, 1.5), kind="nearest")
    assert fine.spatial_shape == (18, 16, 14)
    back = resample_to_grid(fine, volume.spatial_shape, volume.affine, kind="nearest")
    assert back.spatial_shape == volume.spatial_shape
    assert np.allclose(back.affine, volume.affine, atol=1e-5)
    assert np.array_equal(back.array, labels)
    coarse = resample_to_spacing(volume, 2.0, kind="onehot")
    back = resample_to_grid(coarse, *fine.meta["original_grid"], kind="nearest")
    assert back.spatial_shape == volume.spatial_shape and np.allclose(
        back.affine, volume.affine, atol=1e-5
    )
    assert set(np.unique(back.array)) <= {0, 1, 2}


def test_resample_to_spacing_keeps_directions_and_field_of_view(rng):
    affine = oblique_affine(spacing=(0.8, 1.1, 2.5))
    volume = Volume(rng.normal(size=(10, 8, 6)).astype(np.float32), affine)
    result = resample_to_spacing(volume, (1.6, None, 1.25))
    assert np.allclose(result.spacing, (1.6, 1.1, 1.25))
    assert result.spatial_shape == (5, 8, 12)
    directions = result.affine[:3, :3] / result.spacing
    assert np.allclose(directions, affine[:3, :3] / np.array(volume.spacing))
    # the outer corner of the field of view (voxel -0.5, -0.5, -0.5) does not move
    assert np.allclose(_world(result, (-0.5,) * 3), _world(volume, (-0.5,) * 3), atol=1e-9)


@pytest.mark.parametrize(
    ("kind", "interpolator"), [("linear", sitk.sitkLinear), ("nearest", sitk.sitkNearestNeighbor)]
)
def test_matches_simpleitk_resampler_on_an_oblique_grid(rng, kind, interpolator):
    source = Volume(rng.normal(size=(12, 10, 8)).astype(np.float32), oblique_affine())
    target_affine = oblique_affine(
        spacing=(0.7, 0.9, 1.3), angles=(0.35, -0.15, 0.45), origin=(-38.0, 19.0, 65.0)
    )
    ours = resample_to_grid(source, (9, 8, 7), target_affine, kind=kind, fill=0.0)
    image = sitk.GetImageFromArray(np.transpose(source.array, (2, 1, 0)))
    set_sitk_geometry(image, source.affine)
    grid = sitk.Image(9, 8, 7, sitk.sitkFloat32)
    set_sitk_geometry(grid, target_affine)
    theirs = np.transpose(
        sitk.GetArrayFromImage(sitk.Resample(image, grid, sitk.Transform(), interpolator, 0.0)),
        (2, 1, 0),
    )
    inside = theirs != 0  # SimpleITK leaves points outside the source at the default value
    assert inside.sum() > 100
    assert np.allclose(ours.array[inside], theirs[inside], atol=1e-4)


def test_cubic_reproduces_a_smooth_field_and_onehot_keeps_labels(rng):
    x, y, z = np.meshgrid(np.arange(12), np.arange(12), np.arange(12), indexing="ij")
    field = (np.sin(x / 3.0) + 0.1 * y * z / 12.0).astype(np.float32)
    volume = Volume(field, np.diag([2.0, 2.0, 2.0, 1.0]))
    fine = resample_to_spacing(volume, 1.0, kind="cubic")
    i, j, k = np.meshgrid(np.arange(24), np.arange(24), np.arange(24), indexing="ij")
    xs, ys, zs = (i - 0.5) / 2, (j - 0.5) / 2, (k - 0.5) / 2
    expected = np.sin(xs / 3.0) + 0.1 * ys * zs / 12.0
    interior = (slice(4, 20),) * 3
    assert np.abs(fine.array[interior] - expected[interior]).max() < 0.01
    labels = Volume((field > 0.5).astype(np.uint8) * 3, volume.affine)
    smooth = resample_to_spacing(labels, 1.0, kind="onehot")
    assert set(np.unique(smooth.array)) == {0, 3} and smooth.array.dtype == np.uint8


def test_two_d_volumes_and_bad_arguments(rng):
    volume = Volume(rng.normal(size=(6, 4)).astype(np.float32), np.diag([0.5, 0.5, 1.0, 1.0]))
    flipped = reorient(volume, "LAS")
    assert flipped.spatial_dims == 2 and np.array_equal(flipped.array, volume.array[::-1])
    assert np.array_equal(reorient_back(flipped).array, volume.array)
    result = resample_to_spacing(volume, (1.0, 1.0))
    assert result.spatial_shape == (3, 2) and result.spatial_dims == 2
    with pytest.raises(ConfigError, match="kind"):
        resample_to_grid(volume, (3, 2), volume.affine, kind="bspline")
    with pytest.raises(ConfigError, match="spacing"):
        resample_to_spacing(volume, (1.0, 1.0, 1.0))
