"""``MODELS`` and ``build_model``: config names -> networks of the U-Net family.

>>> model = build_model("attention_unet", 3, 1, 3, features=16, depth=4, deep_supervision=True)

Every model takes the common options in :data:`COMMON_OPTIONS`; a few take their own (``t`` for
the recurrent ones, ``growth_rate``/``dense_layers`` for ``dense_unet``, ``prune`` for ``unetpp``,
``dense_blocks``/``lstm_features`` for ``bcdu_net``).
:func:`model_options` lists them with their defaults, and an unknown option is refused with a
:class:`~medseg3d.errors.ConfigError` that names it and the allowed ones.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn.blocks import (
    DenseBlock,
    DenseInceptionBlock,
    DoubleConv,
    InceptionResBlock,
    RecurrentBlock,
    ResidualBlock,
    RRCNNBlock,
)
from medseg3d.nn.models import BCDUNet, SegmentationNetwork, UNet, UNetPlusPlus
from medseg3d.registry import Registry

MODELS: Registry = Registry("model")

#: Options every model takes, with their defaults.
COMMON_OPTIONS: dict[str, Any] = {
    "depth": 4,  # number of down-samplings
    "features": 32,  # first-level width, doubled per level (or a list, one width per level)
    "norm": "instance",  # batch | instance | group | layer | none, or (name, kwargs)
    "act": "leaky_relu",  # relu | leaky_relu | prelu | gelu | ..., or (name, kwargs)
    "dropout": 0.0,
    "upsample": "transpose",  # transpose | interp
    "padding": "same",  # same | valid (unet, attention_unet, residual_unet)
    "deep_supervision": False,
}


@MODELS.register("unet")
def unet(spatial_dims: int, in_channels: int, out_channels: int, **common: Any) -> UNet:
    """U-Net (Ronneberger et al. 2015): two 3x3 conv-norm-act per level."""
    return UNet(spatial_dims, in_channels, out_channels, block=DoubleConv, name="unet", **common)


@MODELS.register("attention_unet")
def attention_unet(spatial_dims: int, in_channels: int, out_channels: int, **common: Any) -> UNet:
    """Attention U-Net (Oktay et al. 2018): U-Net with additive attention gates on the skips."""
    return UNet(
        spatial_dims, in_channels, out_channels, attention=True, name="attention_unet", **common
    )


@MODELS.register("residual_unet")
def residual_unet(spatial_dims: int, in_channels: int, out_channels: int, **common: Any) -> UNet:
    """Residual U-Net: residual blocks (two 3x3 convs plus a shortcut) at every level."""
    return UNet(
        spatial_dims, in_channels, out_channels, block=ResidualBlock, name="residual_unet", **common
    )


@MODELS.register("recurrent_unet")
def recurrent_unet(
    spatial_dims: int, in_channels: int, out_channels: int, *, t: int = 2, **common: Any
) -> UNet:
    """RU-Net (Alom et al. 2018): recurrent conv layers unrolled for ``t`` steps."""
    return UNet(
        spatial_dims,
        in_channels,
        out_channels,
        block=RecurrentBlock,
        block_options={"t": t},
        name="recurrent_unet",
        **common,
    )


@MODELS.register("r2unet")
def r2unet(
    spatial_dims: int, in_channels: int, out_channels: int, *, t: int = 2, **common: Any
) -> UNet:
    """R2U-Net (Alom et al. 2018): recurrent residual (RRCNN) blocks, ``t`` recurrent steps."""
    return UNet(
        spatial_dims,
        in_channels,
        out_channels,
        block=RRCNNBlock,
        block_options={"t": t},
        name="r2unet",
        **common,
    )


@MODELS.register("dense_unet")
def dense_unet(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    growth_rate: int | None = None,
    dense_layers: int = 3,
    **common: Any,
) -> UNet:
    """Dense U-Net: dense blocks of ``dense_layers`` layers (``growth_rate`` None: width // 2)."""
    return UNet(
        spatial_dims,
        in_channels,
        out_channels,
        block=DenseBlock,
        block_options={"growth_rate": growth_rate, "num_layers": dense_layers},
        name="dense_unet",
        **common,
    )


@MODELS.register("inception_unet")
def inception_unet(spatial_dims: int, in_channels: int, out_channels: int, **common: Any) -> UNet:
    """Inception U-Net after DIU-Net: Inception-Res blocks, a Dense-Inception bottleneck."""
    return UNet(
        spatial_dims,
        in_channels,
        out_channels,
        block=InceptionResBlock,
        bottleneck=DenseInceptionBlock,
        name="inception_unet",
        **common,
    )


@MODELS.register("unetpp")
def unetpp(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    prune: int | None = None,
    **common: Any,
) -> UNetPlusPlus:
    """UNet++ (Zhou et al. 2018): nested dense skips; ``prune=L`` keeps level L at inference."""
    return UNetPlusPlus(
        spatial_dims, in_channels, out_channels, prune=prune, name="unetpp", **common
    )


@MODELS.register("bcdu_net")
def bcdu_net(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    *,
    dense_blocks: int = 3,
    lstm_features: int | None = None,
    **common: Any,
) -> BCDUNet:
    """BCDU-Net (Azad et al. 2019): bidirectional ConvLSTM skips, densely connected bottleneck."""
    return BCDUNet(
        spatial_dims,
        in_channels,
        out_channels,
        dense_blocks=dense_blocks,
        lstm_features=lstm_features,
        name="bcdu_net",
        **common,
    )


def model_options(name: str) -> dict[str, Any]:
    """Every option ``name`` takes, with its default (the common ones first)."""
    builder = MODELS.get(name)
    extra = {
        parameter.name: parameter.default
        for parameter in inspect.signature(builder).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return {**COMMON_OPTIONS, **extra}


def build_model(
    name: str, spatial_dims: int, in_channels: int, out_channels: int, **options: Any
) -> SegmentationNetwork:
    """Build model ``name`` (one of :data:`MODELS`) with He-initialised weights.

    Returns a network mapping ``(B, in_channels, *spatial)`` to logits
    ``(B, out_channels, *spatial)`` (a list ``[full_res, half_res, ...]`` in training mode with
    ``deep_supervision=True``). Raises :class:`~medseg3d.errors.ConfigError` for an unknown model
    or option, naming the allowed ones, and for invalid values.
    """
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for model {name!r}; allowed: {', '.join(allowed)}"
        )
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    resolved = {**allowed, **options}
    model = MODELS.get(name)(spatial_dims, in_channels, out_channels, **resolved)
    model.options = resolved
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
