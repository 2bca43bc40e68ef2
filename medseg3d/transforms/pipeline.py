"""The training augmentation pipeline, in nnU-Net's order and with its probabilities.

``build_training_transforms(spatial_dims, patch_size)`` returns a ``monai.transforms.Compose``
for dicts ``{"image": (C, *spatial) float32, "label": (1, *spatial) int}`` (numpy, memmap, tensor
or MetaTensor); the output is ``{"image": (C, *patch_size) float32, "label": (1, *patch_size)}``
with the label's integer dtype kept. Steps (nnU-Net v2 ``get_training_transforms``):

1. foreground-oversampled crop of a larger patch (reads only that patch);
2. one resampling: rotation (p 0.2), zoom (p 0.2), elastic (p 0.2, off in nnU-Net v2 but the
   3D U-Net paper's key augmentation) and the centre crop to ``patch_size``;
3. Gaussian noise (0.1), blur (0.2), brightness (0.15), contrast (0.15), low resolution (0.25),
   inverted gamma (0.1), gamma (0.3); optional MRI bias field and intensity scale/shift (p 0);
4. mirroring on every axis (p 0.5 each); optional 90-degree rotations (p 0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.transforms import Compose

from medseg3d.errors import ConfigError
from medseg3d.nn import layers
from medseg3d.transforms import wrappers
from medseg3d.transforms.deform import RandElasticDeformd
from medseg3d.transforms.elastic import parse_ranges, rotation_matrix, rotation_planes
from medseg3d.transforms.patch import RandForegroundPatchd


def default_rotation(spatial_dims: int) -> float:
    """nnU-Net's rotation half-range in radians: 30 degrees per axis in 3D, 180 degrees in 2D."""
    return math.pi if spatial_dims == 2 else math.pi / 6


def initial_patch_size(
    patch_size: Sequence[int],
    rotate_range: float | Sequence = 0.0,
    scale_range: Sequence[float] | None = None,
) -> tuple[int, ...]:
    """The patch to crop before the spatial transform so ``patch_size`` never sees the border.

    As nnU-Net's ``get_patch_size``: the largest extent of the patch rotated by the largest
    angle about each axis, divided by the smallest zoom.
    """
    dims = len(patch_size)
    extent = np.asarray(patch_size, dtype=float)
    largest = extent.copy()
    ranges = parse_ranges(rotate_range, len(rotation_planes(dims)), "rotate_range")
    for axis, (low, high) in enumerate(ranges):
        angles = [0.0] * len(ranges)
        angles[axis] = min(max(abs(low), abs(high)), math.pi / 2)
        largest = np.maximum(largest, np.abs(rotation_matrix(dims, angles) @ extent))
    if scale_range is not None:
        largest = largest / min(1.0, float(min(scale_range)))
    return tuple(int(math.ceil(n - 1e-6)) for n in largest)


def training_crop_size(
    spatial_dims: int,
    patch_size: Sequence[int],
    *,
    rotate_range: float | Sequence | None = None,
    rotate_prob: float = 0.2,
    scale_range: Sequence[float] | None = (0.7, 1.4),
    scale_prob: float = 0.2,
    **_: Any,
) -> tuple[int, ...]:
    """The patch to crop before :func:`build_training_transforms` with these options (the same
    defaults) so its spatial transform never shows the border; other options are ignored."""
    if rotate_range is None:
        rotate_range = default_rotation(spatial_dims)
    return initial_patch_size(
        patch_size, rotate_range if rotate_prob else 0.0, scale_range if scale_prob else None
    )


def build_training_transforms(
    spatial_dims: int,
    patch_size: Sequence[int],
    *,
    image_key: str = "image",
    label_key: str = "label",
    extra_keys: Sequence[str] = (),
    sample_patch: bool = True,
    foreground_probability: float = 0.33,
    rotate_range: float | Sequence | None = None,
    rotate_prob: float = 0.2,
    scale_range: Sequence[float] | None = (0.7, 1.4),
    scale_prob: float = 0.2,
    elastic_prob: float = 0.2,
    num_control_points: int | Sequence[int] = 7,
    max_displacement: float | Sequence[float] = 7.5,
    spacing: Sequence[float] | str | None = None,
    label_mode: str = "nearest",
    noise_prob: float = 0.1,
    blur_prob: float = 0.2,
    brightness_prob: float = 0.15,
    contrast_prob: float = 0.15,
    low_resolution_prob: float = 0.25,
    inverted_gamma_prob: float = 0.1,
    gamma_prob: float = 0.3,
    bias_field_prob: float = 0.0,
    scale_shift_prob: float = 0.0,
    mirror_axes: Sequence[int] | None = None,
    rot90_prob: float = 0.0,
    seed: int | None = None,
) -> Compose:
    """The whole augmentation pipeline (see the module docstring); distances in voxels, or mm
    with ``spacing``. ``rotate_range`` defaults to nnU-Net's (30 degrees per axis in 3D, 180 in
    2D); ``extra_keys`` are further image-like keys deformed with the image (linear)."""
    dims = layers.check_spatial_dims(spatial_dims)
    patch = tuple(int(n) for n in patch_size)
    if len(patch) != dims:
        raise ConfigError(f"patch_size {patch} must have spatial_dims={dims} entries")
    if rotate_range is None:
        rotate_range = default_rotation(dims)
    image_keys = [image_key, *extra_keys]
    all_keys = [*image_keys, label_key]
    transforms: list[Any] = []
    if sample_patch:
        larger = training_crop_size(
            dims,
            patch,
            rotate_range=rotate_range,
            rotate_prob=rotate_prob,
            scale_range=scale_range,
            scale_prob=scale_prob,
        )
        transforms.append(
            RandForegroundPatchd(
                all_keys,
                larger,
                label_key=label_key,
                foreground_probability=foreground_probability,
                allow_missing_keys=True,
            )
        )
    if rot90_prob:
        transforms.append(wrappers.RandRot90d(all_keys, prob=rot90_prob, allow_missing_keys=True))
    transforms.append(
        RandElasticDeformd(
            all_keys,
            prob=1.0,
            spatial_dims=dims,
            spatial_size=patch,
            mode=["linear"] * len(image_keys) + [label_mode],
            spacing=spacing,
            allow_missing_keys=True,
            num_control_points=num_control_points,
            max_displacement=max_displacement,
            elastic_prob=elastic_prob,
            rotate_range=rotate_range,
            rotate_prob=rotate_prob,
            scale_range=scale_range,
            scale_prob=scale_prob,
        )
    )
    intensity_steps = [
        (wrappers.RandGaussianNoised, noise_prob, {}),
        (wrappers.RandGaussianBlurd, blur_prob, {}),
        (wrappers.RandBiasFieldd, bias_field_prob, {}),
        (wrappers.RandBrightnessd, brightness_prob, {}),
        (wrappers.RandScaleShiftIntensityd, scale_shift_prob, {}),
        (wrappers.RandContrastd, contrast_prob, {}),
        (wrappers.RandLowResolutiond, low_resolution_prob, {}),
        (wrappers.RandGammad, inverted_gamma_prob, {"invert": True}),
        (wrappers.RandGammad, gamma_prob, {}),
    ]
    for transform_type, prob, options in intensity_steps:
        if prob:
            transforms.append(
                transform_type(image_keys, prob=prob, allow_missing_keys=True, **options)
            )
    if mirror_axes is None or len(mirror_axes):
        transforms.append(
            wrappers.RandFlipd(all_keys, prob=1.0, axes=mirror_axes, allow_missing_keys=True)
        )
    pipeline = Compose(transforms)
    if seed is not None:
        pipeline.set_random_state(seed=seed)
    return pipeline
