"""Residual block (He et al. 2016) in the pre-addition form used by residual U-Nets."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medseg3d.nn import layers
from medseg3d.nn.blocks.conv import ConvNormAct
from medseg3d.nn.blocks.skip import center_crop


def projection(spatial_dims: int, in_channels: int, out_channels: int, norm: Any) -> nn.Module:
    """The identity when the widths match, else a 1x1 ``conv + norm`` (the residual shortcut)."""
    if in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        layers.conv(spatial_dims, in_channels, out_channels, 1),
        layers.norm(norm, spatial_dims, out_channels),
    )


class ResidualBlock(nn.Module):
    """``act(norm(conv(act(norm(conv(x))))) + shortcut(x))``: ``(B, in, *S) -> (B, out, *S')``.

    With ``padding="valid"`` (``S' = S - 4``) the shortcut is center-cropped to the output.
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
        options = {"norm": norm, "padding": padding}
        self.conv1 = ConvNormAct(
            spatial_dims, in_channels, out_channels, 3, act=act, dropout=dropout, **options
        )
        self.conv2 = ConvNormAct(spatial_dims, out_channels, out_channels, 3, act=None, **options)
        self.shortcut = projection(spatial_dims, in_channels, out_channels, norm)
        self.act = layers.act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return self.act(out + center_crop(self.shortcut(x), out.shape[2:]))
