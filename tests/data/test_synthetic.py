"""Synthetic cases: deterministic, realistic HU, the same anatomy in the world on any grid."""

from __future__ import annotations

import numpy as np
import pytest

from medseg3d.data import CT_LABELS, make_ct_like_case, make_ellipsoid_case
from medseg3d.data.synthetic import make_affine
from medseg3d.errors import ConfigError
from medseg3d.io import reorient


def test_ellipsoids_are_deterministic_2d_and_3d():
    for shape in [(32, 32), (24, 20, 16)]:
        first = make_ellipsoid_case(shape, seed=3, num_classes=3)
        again = make_ellipsoid_case(shape, seed=3, num_classes=3)
        other = make_ellipsoid_case(shape, seed=4, num_classes=3)
        np.testing.assert_array_equal(first[0].array, again[0].array)
        assert not np.array_equal(first[0].array, other[0].array)
        image, label = first
        assert image.spatial_shape == shape and image.array.dtype == np.float32
        assert set(np.unique(label.array)) == {0, 1, 2, 3}
        # class k is brighter by k than the noise around it
        for k in (1, 2, 3):
            assert abs(image.array[label.array == k].mean() - k) < 0.2


def test_ct_like_case_has_realistic_hounsfield_units():
    image, label = make_ct_like_case(seed=0)
    hu, lab = image.array.astype(float), label.array
    assert image.array.dtype == np.int16 and lab.dtype == np.uint8
    assert set(np.unique(lab)) == set(CT_LABELS.values())
    assert image.meta["modality"] == "CT"
    assert np.median(hu[0]) < -900  # air at the border
    assert 80 < np.median(hu[lab == 1]) < 120  # liver, portal-venous
    kidney = hu[lab == 2]
    assert 40 < np.median(kidney) < 200 and kidney.max() > 150  # bright cortex
    assert hu.max() > 600  # bone distractors
    assert (lab == 1).sum() > (lab == 2).sum() > 100


def test_anatomy_is_fixed_in_the_world_whatever_the_grid():
    """A case stored LPS, reoriented to RAS, equals the same case generated in RAS."""
    ras = make_ct_like_case((30, 28, 24), (8.0, 8.0, 7.0), seed=5, orientation="RAS", noise_std=0)
    lps = make_ct_like_case((30, 28, 24), (8.0, 8.0, 7.0), seed=5, orientation="LPS", noise_std=0)
    back = reorient(lps[1], "RAS")
    np.testing.assert_allclose(back.affine, ras[1].affine, atol=1e-9)
    np.testing.assert_array_equal(back.array, ras[1].array)
    np.testing.assert_array_equal(reorient(lps[0], "RAS").array, ras[0].array)


def test_affines_permuted_flipped_and_oblique():
    affine = make_affine((10, 20, 30), (1.0, 2.0, 3.0), "SLP", center=(5, 6, 7))
    assert "".join(__import__("nibabel").aff2axcodes(affine)) == "SLP"
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), [1, 2, 3])
    np.testing.assert_allclose(affine @ [4.5, 9.5, 14.5, 1], [5, 6, 7, 1])
    image, _ = make_ct_like_case((16, 16, 12), seed=1, oblique=True)
    direction = image.affine[:3, :3] / np.linalg.norm(image.affine[:3, :3], axis=0)
    np.testing.assert_allclose(direction.T @ direction, np.eye(3), atol=1e-12)
    assert np.abs(direction - np.diag(np.diag(direction))).max() > 0.1  # really tilted
    with pytest.raises(ConfigError):
        make_affine((4, 4, 4), (1, 1, 1), "RRS")
