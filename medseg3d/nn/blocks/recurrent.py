"""Recurrent convolutional blocks of RU-Net and R2U-Net (Alom et al. 2018)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn import layers
from medseg3d.nn.blocks.conv import ConvNormAct, require_same_padding


class RecurrentConv(nn.Module):
    """A recurrent convolutional layer unrolled for ``t`` steps, weights shared across steps.

    ``h(0) = f(x)``, ``h(k) = f(x + h(k-1))`` for ``k = 1..t`` where ``f`` is one 3x3
    ``conv-norm-act``; ``(B, C, *S) -> (B, C, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        t: int = 2,
        *,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        if not isinstance(t, int) or isinstance(t, bool) or t < 1:
            raise ConfigError(f"t (recurrent steps) must be an integer >= 1, got {t!r}")
        self.t = t
        self.conv = ConvNormAct(
            spatial_dims, channels, channels, 3, norm=norm, act=act, dropout=dropout
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.conv(x)
        for _ in range(self.t):
            state = self.conv(x + state)
        return state


class RecurrentBlock(nn.Module):
    """RU-Net block: a 1x1 conv to ``out_channels`` then two recurrent conv layers (``t`` steps).

    ``(B, in_channels, *S) -> (B, out_channels, *S)``; same padding only.
    """

    residual = False

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        t: int = 2,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        padding: str = "same",
    ):
        super().__init__()
        require_same_padding(padding, type(self).__name__)
        self.project = layers.conv(spatial_dims, in_channels, out_channels, 1)
        options = {"norm": norm, "act": act}
        self.recurrent = nn.Sequential(
            RecurrentConv(spatial_dims, out_channels, t, dropout=dropout, **options),
            RecurrentConv(spatial_dims, out_channels, t, **options),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.project(x)
        out = self.recurrent(projected)
        return out + projected if self.residual else out


class RRCNNBlock(RecurrentBlock):
    """R2U-Net's recurrent residual block: :class:`RecurrentBlock` plus the 1x1 projection."""

    residual = True
