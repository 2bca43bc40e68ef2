"""The arguments of :func:`~medseg3d.inference.sliding_window.sliding_window_inference`,
checked before any window runs: each problem is one line naming the argument and what to give.
"""

from __future__ import annotations

import math

import torch

from medseg3d.errors import ConfigError, InvalidVoxelError, ShapeError

OUTPUTS = ("logits", "probabilities", "labels")
ACTIVATIONS = ("softmax", "sigmoid")
AVERAGES = ("logits", "probabilities")
PADDING_MODES = ("constant", "reflect", "replicate", "circular")


def check_dtype(dtype, output, classes, activation) -> None:
    if dtype is None:
        return
    if output != "labels":
        if not dtype.is_floating_point:
            raise ConfigError(f"output={output!r} needs a floating dtype, got {dtype}")
        return
    if dtype.is_floating_point or dtype.is_complex:
        raise ConfigError(f"output='labels' needs an integer dtype, got {dtype}")
    largest = 1 if activation == "sigmoid" else classes - 1
    if dtype != torch.bool and torch.iinfo(dtype).max < largest:
        raise ConfigError(
            f"dtype {dtype} cannot hold label {largest} ({classes} classes); use torch.int16"
        )


def check_finite(inputs: torch.Tensor) -> None:
    if inputs.is_floating_point() and not bool(torch.isfinite(inputs).all()):
        bad = int((~torch.isfinite(inputs)).sum())
        raise InvalidVoxelError(
            f"the input has {bad} NaN/Inf voxel(s); they would spread through every window that "
            "sees them (one NaN voxel can erase a whole segmentation): fix or mask them first"
        )


def check_padding(image_size, patch, padding, padding_mode) -> None:
    padded = math.prod(p if p > n else n for p, n in zip(patch, image_size))
    image = math.prod(image_size)
    if padded > 8 * image + 2**22:
        raise ConfigError(
            f"patch_size {tuple(patch)} is far larger than the image {tuple(image_size)}: padding "
            f"it would take {padded:,} voxels for {image:,}; use a patch near the image size"
        )
    if padding_mode == "reflect":
        for (before, after), size in zip(padding, image_size):
            if max(before, after) >= size:
                raise ConfigError(
                    f"padding_mode='reflect' cannot pad an axis of {size} voxels by "
                    f"{max(before, after)} (the patch is {tuple(patch)}); use 'constant' or "
                    "'replicate'"
                )


def as_device(device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"unknown device {device!r} ({error})") from None


def check_size_divisor(predictor, patch) -> None:
    divisor = getattr(predictor, "size_divisor", None)
    if isinstance(divisor, int) and divisor > 1 and any(p % divisor for p in patch):
        fixed = tuple(-(-p // divisor) * divisor for p in patch)
        raise ShapeError(
            f"patch_size {patch} is not a multiple of the network's size_divisor {divisor}; use {fixed}"
        )


def check_options(
    inputs, batch_size, output, activation, average, background, padding_mode="constant"
) -> None:
    if not isinstance(inputs, torch.Tensor) or not 3 <= inputs.dim() <= 5:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise ShapeError(
            f"inputs must be a tensor (B, C, *spatial) with 1-3 spatial axes, got {shape}"
        )
    if inputs.shape[0] == 0 or any(size == 0 for size in inputs.shape[1:]):
        raise ShapeError(f"inputs has an empty axis: {tuple(inputs.shape)}")
    if padding_mode not in PADDING_MODES:
        raise ConfigError(
            f"unknown padding_mode {padding_mode!r}; choose one of: {', '.join(PADDING_MODES)}"
        )
    for name, value, allowed in (
        ("output", output, OUTPUTS),
        ("activation", activation, ACTIVATIONS),
        ("average", average, AVERAGES),
    ):
        if value not in allowed:
            raise ConfigError(f"unknown {name} {value!r}; choose one of: {', '.join(allowed)}")
    if output == "logits" and average == "probabilities":
        raise ConfigError("output='logits' needs average='logits'; ask for output='probabilities'")
    if int(batch_size) < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size!r}")
    if int(background) < 0:
        raise ConfigError(f"background must be a class index >= 0, got {background!r}")
