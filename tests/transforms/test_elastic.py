"""Elastic + affine deformation: identity, references (scipy), labels, alignment, folding, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import affine_transform, gaussian_filter

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.transforms import (
    FOLD_FREE_LIMIT,
    SpatialAugment,
    SpatialParams,
    apply_spatial,
    jacobian_determinant,
    rotation_matrix,
    voxel_map,
)

SHAPES = {2: (40, 36), 3: (20, 18, 16)}


def smooth_image(shape, seed=0):
    """A smooth random image (so linear resampling is accurate) in roughly [0, 1]."""
    rng = np.random.default_rng(seed)
    image = gaussian_filter(rng.random(shape), 2.0)
    image = (image - image.min()) / (image.max() - image.min())
    return torch.from_numpy(image[None].astype(np.float32))


@pytest.mark.parametrize("dims", [2, 3])
def test_identity_reproduces_input_and_crops_centred(dims):
    image = smooth_image(SHAPES[dims])
    label = (image > 0.5).to(torch.int64) * 3
    identity = SpatialParams.identity(dims)
    zero = SpatialParams(np.eye(dims), np.zeros(dims), np.zeros((5,) * dims + (dims,)))
    for params in (identity, zero):
        torch.testing.assert_close(apply_spatial(image, params), image, atol=1e-4, rtol=0)
        assert torch.equal(apply_spatial(label, params, kind="nearest"), label)
    smaller = tuple(n - 5 for n in SHAPES[dims])
    start = [(n - m) // 2 for n, m in zip(SHAPES[dims], smaller)]
    expected = image[(slice(None), *(slice(s, s + m) for s, m in zip(start, smaller)))]
    torch.testing.assert_close(apply_spatial(image, zero, smaller), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_affine_matches_scipy(dims):
    image = smooth_image(SHAPES[dims])
    angles = [0.3, -0.2, 0.4][: 1 if dims == 2 else 3]
    matrix = rotation_matrix(dims, angles) @ np.diag([0.8, 1.1, 1.2][:dims])
    params = SpatialParams(matrix, np.array([1.5, -2.0, 0.5][:dims]))
    mapping = voxel_map(params, SHAPES[dims], SHAPES[dims])
    reference = affine_transform(
        image[0].double().numpy(),
        mapping[:dims, :dims],
        mapping[:dims, dims],
        order=1,
        mode="grid-constant",
    )
    out = apply_spatial(image, params)
    np.testing.assert_allclose(out[0].numpy(), reference, atol=1e-4)


def test_anisotropic_spacing_rotates_in_millimetres():
    """A 90-degree turn in mm on a 1 x 2 mm grid maps voxel offsets (2, 0) <-> (0, 1)."""
    shape = (21, 11)
    image = torch.zeros(1, *shape)
    image[0, 10 + 4, 5] = 1.0  # 4 voxels x 1 mm from the centre along axis 0
    params = SpatialParams(rotation_matrix(2, [np.pi / 2]), np.zeros(2))
    out = apply_spatial(image, params, spacing=(1.0, 2.0))
    peak = np.unravel_index(int(out[0].argmax()), shape)
    assert (
        abs(peak[0] - 10) + abs(peak[1] - 5) == 2 and peak[0] == 10
    )  # 4 mm = 2 voxels along axis 1


def blob_image(shape):
    """Two overlapping Gaussian blobs: thresholding at 0.5 gives a smooth foreground."""
    grids = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    near = sum((g - 0.2) ** 2 for g in grids)
    far = sum((g + 0.35) ** 2 for g in grids)
    image = np.exp(-near / 0.4) + 0.8 * np.exp(-far / 0.2)
    return torch.from_numpy(image[None].astype(np.float32))


@pytest.mark.parametrize("shape", [(96, 96), (40, 40, 40)])
def test_labels_keep_values_and_stay_aligned_with_the_image(shape):
    dims = len(shape)
    image = blob_image(shape)
    label = torch.where(image > 0.7, 2, torch.where(image > 0.5, 5, 0)).to(torch.uint8)
    augment = SpatialAugment(dims, max_displacement=3.0, rotate_range=0.3, scale_range=(0.9, 1.1))
    rng = np.random.RandomState(3)
    for _ in range(2):
        params = augment.sample(rng, shape)
        assert params.displacements is not None and not np.allclose(params.matrix, np.eye(dims))
        warped_image = apply_spatial(image, params)
        warped_label = apply_spatial(label, params, kind="nearest")
        assert warped_label.dtype == torch.uint8
        assert set(torch.unique(warped_label).tolist()) <= {0, 2, 5}
        warped_mask = apply_spatial((image > 0.5).float(), params, kind="nearest")
        assert ((warped_image > 0.5).float() == warped_mask).float().mean() > 0.99
        onehot = apply_spatial(label, params, kind="onehot")
        assert set(torch.unique(onehot).tolist()) <= {0, 2, 5}
        assert (onehot == warped_label).float().mean() > 0.98


@pytest.mark.parametrize("dims", [2, 3])
def test_no_folding_at_defaults_even_for_large_requests(dims):
    shape = SHAPES[dims]
    for augment in (SpatialAugment(dims), SpatialAugment(dims, max_displacement=50.0)):
        rng = np.random.RandomState(0)
        for _ in range(5):
            params = augment.sample(rng, shape)
            assert jacobian_determinant(params.displacements, shape).min() > 0
    loose = SpatialAugment(dims, max_displacement=50.0, fold_free=False)
    params = loose.sample(np.random.RandomState(0), shape)
    assert (
        jacobian_determinant(params.displacements, shape).min() < 0
    )  # the clip is what prevents it
    assert FOLD_FREE_LIMIT < 1 / 2.046


def test_locked_borders_zero_the_outer_control_points():
    params = SpatialAugment(3, locked_borders=2).sample(np.random.RandomState(0), (16, 16, 16))
    assert not params.displacements[:2].any() and not params.displacements[:, -2:].any()
    assert params.displacements[2:-2, 2:-2, 2:-2].any()


def test_same_seed_same_output_and_batch_equals_single():
    image = smooth_image(SHAPES[3])
    augment = SpatialAugment(3, rotate_range=0.4, scale_range=(0.8, 1.2))
    first = [augment.sample(np.random.RandomState(7), SHAPES[3]) for _ in range(2)]
    assert torch.equal(apply_spatial(image, first[0]), apply_spatial(image, first[1]))
    params = [augment.sample(np.random.RandomState(seed), SHAPES[3]) for seed in (1, 2)]
    batch = torch.stack([image, image.flip(1)])
    together = apply_spatial(batch, params)
    for index in range(2):
        torch.testing.assert_close(together[index], apply_spatial(batch[index], params[index]))


def test_float32_on_the_input_device_and_cubic_in_2d():
    image = smooth_image(SHAPES[2])
    params = SpatialAugment(2, rotate_range=0.2).sample(np.random.RandomState(0), SHAPES[2])
    out = apply_spatial(image.double(), params, kind="cubic")
    assert out.dtype == torch.float32 and out.device == image.device
    inner = (slice(None), slice(6, -6), slice(6, -6))  # the borders differ by the zero padding
    torch.testing.assert_close(out[inner], apply_spatial(image, params)[inner], atol=0.02, rtol=0)
    with pytest.raises(ConfigError):
        apply_spatial(smooth_image(SHAPES[3]), SpatialParams.identity(3), kind="bicubic-ish")


def test_bad_settings_and_shapes_raise_one_line_errors():
    with pytest.raises(ConfigError, match="num_control_points"):
        SpatialAugment(3, num_control_points=3)
    with pytest.raises(ConfigError, match="rotate_range"):
        SpatialAugment(3, rotate_range=[0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ConfigError, match="scale_range"):
        SpatialAugment(2, scale_range=(1.2, 0.8))
    with pytest.raises(ShapeError):
        apply_spatial(torch.zeros(4, 4), SpatialParams.identity(3))


def test_nearest_lookup_is_exact_for_wide_integer_labels():
    """int64 labels above 2**24 do not survive float32; the index lookup keeps them exact."""
    label = torch.randint(0, 3, (1, 12, 11, 10)) * (2**40) + 7
    params = SpatialAugment(3, rotate_range=0.4, max_displacement=2).sample(
        np.random.RandomState(1), (12, 11, 10)
    )
    out = apply_spatial(label, params, kind="nearest")
    assert out.dtype == torch.int64
    assert set(torch.unique(out).tolist()) <= set(torch.unique(label).tolist()) | {0}
    reference = apply_spatial((label > 2**40).to(torch.uint8), params, kind="nearest")  # float path
    assert torch.equal(out > 2**40, reference.bool())


def test_bspline_weights_match_scipy_and_reproduce_linear_functions():
    from scipy.interpolate import BSpline

    from medseg3d.transforms.warp import bspline_evaluate, bspline_weights

    weights = bspline_weights(25, 7).double()
    u = np.arange(25) * 4 / 24 + 1  # control-index coordinate of each output voxel
    basis = BSpline.basis_element([0, 1, 2, 3, 4], extrapolate=False)  # centred on 2
    reference = np.nan_to_num(basis(u[:, None] - np.arange(7)[None] + 2))
    np.testing.assert_allclose(weights.numpy(), reference, atol=1e-6)
    torch.testing.assert_close(weights.sum(1), torch.ones(25, dtype=torch.float64))
    # linear precision: coefficients on a plane give that plane exactly (how the affine is folded in)
    control = torch.stack(torch.meshgrid(*[torch.arange(5.0)] * 3, indexing="ij"), dim=-1)
    plane = control @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 0.0], [0.3, 0.0, 1.0]])
    dense = bspline_evaluate(plane, (9, 9, 9))
    grid = torch.stack(torch.meshgrid(*[torch.linspace(1, 3, 9)] * 3, indexing="ij"), dim=-1)
    expected = grid @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 2.0, 0.0], [0.3, 0.0, 1.0]])
    torch.testing.assert_close(dense, expected, atol=1e-5, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batch_stays_on_the_device_and_matches_the_cpu():
    image = smooth_image(SHAPES[3])
    label = (image > 0.5).to(torch.uint8)
    augment = SpatialAugment(3, rotate_range=0.3, scale_range=(0.9, 1.1))
    params = [augment.sample(np.random.RandomState(seed), SHAPES[3]) for seed in (0, 1)]
    batch = torch.stack([image, image]).cuda()
    out = apply_spatial(batch, params)
    labels = apply_spatial(torch.stack([label, label]).cuda(), params, kind="nearest")
    assert out.is_cuda and labels.is_cuda and labels.dtype == torch.uint8
    torch.testing.assert_close(out[1].cpu(), apply_spatial(image, params[1]), atol=1e-4, rtol=0)
