"""LPS <-> RAS and ITK/DICOM geometry, checked against SimpleITK and hand-computed cases."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from io_helpers import oblique_affine

from medseg3d.io import lps_to_ras, ras_to_lps
from medseg3d.io.geometry import (
    affine_from_dicom_plane,
    is_sheared,
    set_sitk_geometry,
    sitk_affine,
)


def test_lps_ras_flip_negates_x_and_y_and_is_its_own_inverse():
    affine = oblique_affine()
    ras = lps_to_ras(affine)
    assert np.allclose(ras[:2], -affine[:2]) and np.allclose(ras[2:], affine[2:])
    assert np.allclose(ras_to_lps(lps_to_ras(affine)), affine)


def test_sitk_affine_maps_indices_like_simpleitk():
    image = sitk.Image(5, 6, 7, sitk.sitkInt16)
    set_sitk_geometry(image, oblique_affine(flips=(1, -1, 1)))
    affine = sitk_affine(image)
    for index in [(0, 0, 0), (4, 5, 6), (1, 3, 2)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = affine @ np.array([*index, 1.0])
        assert np.allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
    assert np.allclose(affine, oblique_affine(flips=(1, -1, 1)), atol=1e-9)


def test_dicom_plane_affine_hand_computed():
    # axial slice, rows along +x (L in LPS), columns along +y (P), spacing (rows 0.5, columns 0.7)
    affine = affine_from_dicom_plane((10, 20, 30), (1, 0, 0, 0, 1, 0), (0.5, 0.7), (0, 0, 2))
    expected = np.array([[-0.7, 0, 0, -10], [0, -0.5, 0, -20], [0, 0, 2, 30], [0, 0, 0, 1]])
    assert np.allclose(affine, expected)


def test_shear_detection():
    affine = oblique_affine()
    assert not is_sheared(affine)
    affine[:3, 2] += 0.3 * affine[:3, 0]
    assert is_sheared(affine)
