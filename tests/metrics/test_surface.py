"""Surface distances against MONAI and against hand-computed / brute-force references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
from scipy import ndimage
from scipy.spatial.distance import cdist

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.metrics import average_surface_distance, hausdorff_distance, surface_distances


def _blob(
    rng: np.random.Generator, shape, threshold: float = 0.55, sigma: float = 1.5
) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.random(shape), sigma)
    return field > np.quantile(field, threshold)


def _monai(function, pred: np.ndarray, gt: np.ndarray, spacing, **options) -> float:
    as_tensor = lambda m: torch.from_numpy(m[None, None].astype(np.float32))  # noqa: E731
    return float(
        function(
            as_tensor(pred), as_tensor(gt), include_background=True, spacing=spacing, **options
        )
    )


def _brute_force(pred: np.ndarray, gt: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Directed distances by explicit neighbour test and all-pairs distances (no EDT)."""

    def border(mask):
        padded = np.pad(mask, 1)
        inner = np.ones_like(padded)
        for axis in range(mask.ndim):
            inner &= np.roll(padded, 1, axis) & np.roll(padded, -1, axis)
        return (padded & ~inner)[tuple(slice(1, -1) for _ in range(mask.ndim))]

    a = np.argwhere(border(pred)) * np.asarray(spacing)
    b = np.argwhere(border(gt)) * np.asarray(spacing)
    pairwise = cdist(a, b)
    return pairwise.min(1), pairwise.min(0)


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [((24, 20, 12), (0.8, 1.2, 2.5)), ((20, 18, 16), (1.0, 1.0, 1.0)), ((40, 36), (0.7, 1.9))],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_hd95_and_asd_match_monai(shape, spacing, seed):
    rng = np.random.default_rng(seed)
    pred, gt = _blob(rng, shape), _blob(rng, shape, threshold=0.6)
    ours = hausdorff_distance(pred, gt, spacing)
    assert ours == pytest.approx(
        _monai(compute_hausdorff_distance, pred, gt, spacing, percentile=95), abs=1e-4
    )
    full = hausdorff_distance(pred, gt, spacing, percentile=100)
    assert full == pytest.approx(_monai(compute_hausdorff_distance, pred, gt, spacing), abs=1e-4)
    asd = average_surface_distance(pred, gt, spacing)
    assert asd == pytest.approx(
        _monai(compute_average_surface_distance, pred, gt, spacing, symmetric=True), abs=1e-4
    )


def test_distances_match_brute_force_including_objects_on_the_image_border():
    rng = np.random.default_rng(3)
    pred, gt = _blob(rng, (14, 12, 9), 0.4), _blob(rng, (14, 12, 9), 0.5)
    spacing = (0.9, 1.3, 2.2)
    forward, backward = surface_distances(pred, gt, spacing)
    expected_forward, expected_backward = _brute_force(pred, gt, spacing)
    np.testing.assert_allclose(np.sort(forward), np.sort(expected_forward), atol=1e-9)
    np.testing.assert_allclose(np.sort(backward), np.sort(expected_backward), atol=1e-9)


def test_two_cubes_offset_by_three_voxels_along_the_thick_axis():
    gt = np.zeros((20, 20, 24), dtype=bool)
    gt[5:15, 5:15, 5:15] = True
    pred = np.roll(gt, 3, axis=2)  # 3 slices of 2.5 mm = 7.5 mm
    spacing = (1.0, 1.0, 2.5)
    # The farthest surface voxels are the interiors of the two caps: exactly 3 slices apart.
    assert hausdorff_distance(pred, gt, spacing, percentile=100) == pytest.approx(7.5)
    forward, backward = _brute_force(pred, gt, spacing)
    expected = max(np.percentile(forward, 95), np.percentile(backward, 95))
    assert hausdorff_distance(pred, gt, spacing) == pytest.approx(expected)
    assert hausdorff_distance(pred, gt, spacing) == pytest.approx(
        _monai(compute_hausdorff_distance, pred, gt, spacing, percentile=95), abs=1e-5
    )
    # The same offset along a 1 mm axis is 3 mm.
    assert hausdorff_distance(np.roll(gt, 3, axis=0), gt, spacing, percentile=100) == pytest.approx(
        3.0
    )


def test_small_cubes_by_hand():
    # 2x2x2 cubes, 3 slices apart along z (2.5 mm): every voxel is on the surface; four voxels
    # of each cube are 2 slices (5 mm) from the other cube, four are 3 slices (7.5 mm).
    pred = np.zeros((4, 4, 8), dtype=bool)
    gt = np.zeros_like(pred)
    pred[1:3, 1:3, 0:2] = True
    gt[1:3, 1:3, 3:5] = True
    spacing = (1.0, 1.0, 2.5)
    assert hausdorff_distance(pred, gt, spacing) == pytest.approx(7.5)
    assert average_surface_distance(pred, gt, spacing) == pytest.approx(6.25)


def test_isotropic_number_spacing_and_errors():
    pred = np.zeros((6, 6), dtype=bool)
    pred[1:3, 1:3] = True
    gt = np.roll(pred, 2, axis=1)
    assert hausdorff_distance(pred, gt, 0.5, percentile=100) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="spacing must be 2 positive numbers"):
        hausdorff_distance(pred, gt, (1.0, 0.0))
    with pytest.raises(ShapeError, match="non-empty"):
        hausdorff_distance(pred, np.zeros_like(gt), 1.0)
    with pytest.raises(ShapeError, match="differ in shape"):
        hausdorff_distance(pred, gt[:5], 1.0)
