"""Convolution -> dropout -> norm -> activation, and the classic U-Net double convolution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn import layers

PADDINGS = ("same", "valid")


def require_same_padding(padding: str, block: str) -> None:
    """Raise :class:`ConfigError` unless ``padding == "same"`` (blocks that add or concatenate maps)."""
    if padding != "same":
        raise ConfigError(
            f"padding={padding!r} is not possible in a {block} (it adds or concatenates maps of one "
            "size); use padding='same'"
        )


class ConvNormAct(nn.Sequential):
    """``conv -> dropout -> norm -> act``: ``(B, in_channels, *S) -> (B, out_channels, *S')``.

    ``S' = S`` for ``padding="same"`` (stride 1) and ``S - (kernel_size - 1)`` for ``"valid"``.
    ``act=None`` leaves the output linear (e.g. before a residual addition). The convolution always
    has a bias, as in the 2015 U-Net and nnU-Net.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int] = 3,
        *,
        stride: int = 1,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        padding: str = "same",
    ):
        super().__init__()
        if padding not in PADDINGS:
            raise ConfigError(f"unknown padding {padding!r}; choose one of: {', '.join(PADDINGS)}")
        self.conv = layers.conv(
            spatial_dims, in_channels, out_channels, kernel_size, stride=stride, padding=padding
        )
        self.dropout = layers.dropout(spatial_dims, dropout)
        self.norm = layers.norm(norm, spatial_dims, out_channels)
        self.act = layers.act(act)


class DoubleConv(nn.Sequential):
    """The classic U-Net block (Ronneberger et al. 2015): two 3x3 ``conv-norm-act``.

    ``(B, in_channels, *S) -> (B, out_channels, *S)``; with ``padding="valid"`` each spatial size
    shrinks by 4 voxels.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        padding: str = "same",
    ):
        super().__init__()
        options = {"norm": norm, "act": act, "padding": padding}
        self.conv1 = ConvNormAct(
            spatial_dims, in_channels, out_channels, 3, dropout=dropout, **options
        )
        self.conv2 = ConvNormAct(spatial_dims, out_channels, out_channels, 3, **options)
