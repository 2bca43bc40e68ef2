"""The one dimension-generic layer factory.

This is the only module in medseg3d that names dimension-specific torch layers (``Conv3d``,
``MaxPool2d``, ``BatchNorm3d``…), dimension-specific functional ops (``conv3d``…) and the
interpolation modes (``bilinear`` / ``trilinear``). Everything else asks for a layer by name and
``spatial_dims`` (2 or 3), decided once where a model or transform is built::

    conv(3, 16, 32, kernel_size=3)           # nn.Conv3d(16, 32, 3, padding=1)
    norm("instance", 3, 32)                 # nn.InstanceNorm3d(32, affine=True)
    norm(("group", {"num_groups": 8}), 2, 32)
    act(("leaky_relu", {"negative_slope": 0.01}))

Options given as a name or ``(name, kwargs)`` follow MONAI's ``split_args`` convention. The module
depends on torch alone, so ``transforms`` and ``inference`` may use its functional helpers
(:func:`resize`, :func:`grid_sample`, :func:`conv_nd`) without pulling in model code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg3d.errors import ConfigError

SPATIAL_DIMS = (1, 2, 3)

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
_ADAPTIVE_AVG_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_ADAPTIVE_MAX_POOL = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d, 3: nn.AdaptiveMaxPool3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}
# grid_sample calls its (tri)linear mode "bilinear" for 4D and 5D inputs alike.
_GRID_SAMPLE_MODE = {"linear": "bilinear", "nearest": "nearest", "cubic": "bicubic"}

NORMS = ("batch", "instance", "group", "layer", "none")
ACTIVATIONS = ("relu", "leaky_relu", "prelu", "gelu", "elu", "selu", "silu", "tanh", "sigmoid")

#: Layer classes that hold convolution weights, for weight initialisation by ``isinstance``.
CONV_TYPES: tuple[type[nn.Module], ...] = (*_CONV.values(), *_CONV_TRANSPOSE.values())
#: Normalisation classes, e.g. to exclude their parameters from weight decay.
NORM_TYPES: tuple[type[nn.Module], ...] = (
    *_BATCH_NORM.values(),
    *_INSTANCE_NORM.values(),
    nn.GroupNorm,
    nn.LayerNorm,
)


def check_spatial_dims(spatial_dims: int) -> int:
    """Return ``spatial_dims`` if it is 1, 2 or 3; raise :class:`ConfigError` otherwise."""
    if spatial_dims not in SPATIAL_DIMS:
        raise ConfigError(f"spatial_dims must be 2 or 3 (1 for tests), got {spatial_dims!r}")
    return int(spatial_dims)


def split_args(spec: Any) -> tuple[str | None, dict[str, Any]]:
    """``"relu"`` -> ``("relu", {})``; ``("group", {"num_groups": 8})`` -> itself; None -> (None, {})."""
    if spec is None:
        return None, {}
    if isinstance(spec, str):
        return spec.lower(), {}
    if isinstance(spec, Sequence) and len(spec) == 2 and isinstance(spec[0], str):
        if not isinstance(spec[1], dict):
            raise ConfigError(f"layer options must be a dict, got {spec[1]!r} for {spec[0]!r}")
        return spec[0].lower(), dict(spec[1])
    raise ConfigError(f"expected a name or (name, options), got {spec!r}")


# --- convolutions, pooling, dropout -------------------------------------------------------------
def conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int] = 3,
    *,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = "same",
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
) -> nn.Module:
    """A convolution. ``padding="same"`` keeps the size at stride 1 (``k // 2``), ``"valid"`` pads 0."""
    if padding == "same":
        kernel = _tuple(kernel_size, spatial_dims)
        padding = tuple(dilation * (k - 1) // 2 for k in kernel)
    elif padding == "valid":
        padding = 0
    return _CONV[check_spatial_dims(spatial_dims)](
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        bias=bias,
    )


def conv_transpose(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int | Sequence[int] = 2,
    *,
    stride: int | Sequence[int] = 2,
    bias: bool = True,
) -> nn.Module:
    """A transposed convolution; the defaults double every spatial size."""
    return _CONV_TRANSPOSE[check_spatial_dims(spatial_dims)](
        in_channels, out_channels, kernel_size, stride=stride, bias=bias
    )


def max_pool(spatial_dims: int, kernel_size: int | Sequence[int] = 2, stride=None) -> nn.Module:
    return _MAX_POOL[check_spatial_dims(spatial_dims)](kernel_size, stride=stride)


def avg_pool(spatial_dims: int, kernel_size: int | Sequence[int] = 2, stride=None) -> nn.Module:
    return _AVG_POOL[check_spatial_dims(spatial_dims)](kernel_size, stride=stride)


def adaptive_avg_pool(spatial_dims: int, output_size: int = 1) -> nn.Module:
    return _ADAPTIVE_AVG_POOL[check_spatial_dims(spatial_dims)](output_size)


def adaptive_max_pool(spatial_dims: int, output_size: int = 1) -> nn.Module:
    return _ADAPTIVE_MAX_POOL[check_spatial_dims(spatial_dims)](output_size)


def pool(name: str, spatial_dims: int, kernel_size: int | Sequence[int] = 2) -> nn.Module:
    """Down-sampling by ``"max"`` or ``"avg"`` pooling."""
    builders = {"max": max_pool, "avg": avg_pool}
    if name not in builders:
        raise ConfigError(f"unknown pooling {name!r}; choose one of: avg, max")
    return builders[name](spatial_dims, kernel_size)


def dropout(spatial_dims: int, p: float, *, channelwise: bool = False) -> nn.Module:
    """Element-wise dropout, or whole-channel dropout (``Dropout2d/3d``) when ``channelwise``."""
    if not 0.0 <= float(p) < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {p!r}")
    if p == 0:
        return nn.Identity()
    if channelwise:
        return _DROPOUT[check_spatial_dims(spatial_dims)](p)
    return nn.Dropout(p)


# --- normalisation and activation ---------------------------------------------------------------
def norm(spec: Any, spatial_dims: int, channels: int) -> nn.Module:
    """A normalisation layer from ``"batch" | "instance" | "group" | "layer" | "none" | None``.

    ``group`` defaults to 8 groups (fewer when ``channels`` is not divisible); ``instance`` is
    affine by default (as in nnU-Net).
    """
    name, kwargs = split_args(spec)
    check_spatial_dims(spatial_dims)
    if name in (None, "none"):
        return nn.Identity()
    if name == "batch":
        return _BATCH_NORM[spatial_dims](channels, **kwargs)
    if name == "instance":
        kwargs.setdefault("affine", True)
        return _INSTANCE_NORM[spatial_dims](channels, **kwargs)
    if name == "group":
        groups = kwargs.pop("num_groups", 8)
        while channels % groups:
            groups -= 1
        return nn.GroupNorm(groups, channels, **kwargs)
    if name == "layer":  # layer norm over channels and space, size-independent
        return nn.GroupNorm(1, channels, **kwargs)
    raise ConfigError(f"unknown norm {name!r}; choose one of: {', '.join(NORMS)}")


def norm_failing_on_one_voxel(module: nn.Module, batch_size: int) -> str | None:
    """The class name of a norm layer in ``module`` that, in its mode, fails on a one-voxel map.

    Instance norm that computes statistics over space (in training, and in eval unless it tracks
    running statistics) needs more than one voxel; batch norm that computes batch statistics
    needs more than one value per channel, so it fails on a batch of one one-voxel map, as does
    group norm with one channel per group (in any mode). ``None`` when no layer fails.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.instancenorm._InstanceNorm):
            if layer.training or not layer.track_running_stats:
                return type(layer).__name__
        elif isinstance(layer, nn.modules.batchnorm._BatchNorm):
            if batch_size == 1 and (layer.training or layer.running_mean is None):
                return type(layer).__name__
        elif isinstance(layer, nn.GroupNorm):
            if batch_size * (layer.num_channels // layer.num_groups) == 1:
                return type(layer).__name__
    return None


def act(spec: Any) -> nn.Module:
    """An activation from a name or ``(name, kwargs)``; ``None``/``"none"`` gives Identity."""
    name, kwargs = split_args(spec)
    if name in (None, "none", "identity"):
        return nn.Identity()
    builders = {
        "relu": lambda: nn.ReLU(**{"inplace": True, **kwargs}),
        "leaky_relu": lambda: nn.LeakyReLU(**{"negative_slope": 0.01, "inplace": True, **kwargs}),
        "leakyrelu": lambda: nn.LeakyReLU(**{"negative_slope": 0.01, "inplace": True, **kwargs}),
        "prelu": lambda: nn.PReLU(**kwargs),
        "gelu": lambda: nn.GELU(**kwargs),
        "elu": lambda: nn.ELU(**{"inplace": True, **kwargs}),
        "selu": lambda: nn.SELU(**{"inplace": True, **kwargs}),
        "silu": lambda: nn.SiLU(**{"inplace": True, **kwargs}),
        "tanh": lambda: nn.Tanh(),
        "sigmoid": lambda: nn.Sigmoid(),
    }
    if name not in builders:
        raise ConfigError(f"unknown activation {name!r}; choose one of: {', '.join(ACTIVATIONS)}")
    try:
        return builders[name]()
    except TypeError as error:
        raise ConfigError(f"bad options for activation {name!r}: {error}") from None


# --- resampling ---------------------------------------------------------------------------------
def interp_mode(spatial_dims: int, kind: str = "linear") -> str:
    """The ``F.interpolate`` mode for ``kind`` in ``"linear" | "nearest" | "cubic"``."""
    check_spatial_dims(spatial_dims)
    if kind == "linear":
        return _LINEAR_MODE[spatial_dims]
    if kind == "nearest":
        return "nearest"
    if kind == "cubic" and spatial_dims == 2:
        return "bicubic"
    raise ConfigError(f"interpolation {kind!r} is not available in {spatial_dims}D")


def upsample(spatial_dims: int, scale_factor: float = 2, kind: str = "linear") -> nn.Module:
    """An ``nn.Upsample`` module (``align_corners=False`` for linear modes)."""
    mode = interp_mode(spatial_dims, kind)
    align = False if mode != "nearest" else None
    return nn.Upsample(scale_factor=scale_factor, mode=mode, align_corners=align)


def resize(
    x: torch.Tensor,
    size: Sequence[int] | None = None,
    *,
    scale_factor: float | Sequence[float] | None = None,
    kind: str = "linear",
) -> torch.Tensor:
    """Resize ``x`` of shape ``(B, C, *spatial)`` with linear (bi/tri) or nearest interpolation."""
    mode = interp_mode(x.dim() - 2, kind)
    align = False if mode != "nearest" else None
    return F.interpolate(x, size=size, scale_factor=scale_factor, mode=mode, align_corners=align)


def grid_sample(
    x: torch.Tensor,
    grid: torch.Tensor,
    *,
    kind: str = "linear",
    padding_mode: str = "zeros",
    align_corners: bool = True,
) -> torch.Tensor:
    """``F.grid_sample`` with ``kind`` in ``"linear" | "nearest" | "cubic"`` (cubic is 2D only)."""
    if kind not in _GRID_SAMPLE_MODE:
        raise ConfigError(f"unknown interpolation {kind!r}; choose one of: cubic, linear, nearest")
    return F.grid_sample(
        x,
        grid,
        mode=_GRID_SAMPLE_MODE[kind],
        padding_mode=padding_mode,
        align_corners=align_corners,
    )


def conv_nd(x: torch.Tensor, weight: torch.Tensor, *, padding=0, groups: int = 1, stride=1):
    """Functional convolution of ``x`` ``(B, C, *spatial)`` in 1, 2 or 3 spatial dims."""
    return _CONV_FN[check_spatial_dims(x.dim() - 2)](
        x, weight, padding=padding, groups=groups, stride=stride
    )


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, Sequence) else (int(value),) * n
