"""Inception-Res and Dense-Inception blocks (Szegedy et al. 2017; DIU-Net, Zhang et al. 2020)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn import layers
from medseg3d.nn.blocks.conv import ConvNormAct, require_same_padding
from medseg3d.nn.blocks.residual import projection


class InceptionModule(nn.Module):
    """Three parallel paths, concatenated: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3.

    ``(B, in_channels, *S) -> (B, 3 * branch_channels, *S)``; the double-3x3 path sees a 5x5 field.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        branch_channels: int,
        *,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        options = {"norm": norm, "act": act}
        width = branch_channels

        def unit(in_ch: int, kernel: int, drop: float = 0.0) -> ConvNormAct:
            return ConvNormAct(spatial_dims, in_ch, width, kernel, dropout=drop, **options)

        self.path1 = unit(in_channels, 1, dropout)
        self.path3 = nn.Sequential(unit(in_channels, 1), unit(width, 3, dropout))
        self.path33 = nn.Sequential(unit(in_channels, 1), unit(width, 3), unit(width, 3, dropout))
        self.out_channels = 3 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.path1(x), self.path3(x), self.path33(x)], dim=1)


class InceptionResBlock(nn.Module):
    """Inception-Res: ``act(fuse_1x1(inception(x)) + shortcut(x))``.

    ``(B, in_channels, *S) -> (B, out_channels, *S)``; each path is ``out_channels // 2`` wide.
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
        require_same_padding(padding, "inception block")
        self.inception = InceptionModule(
            spatial_dims,
            in_channels,
            max(1, out_channels // 2),
            norm=norm,
            act=act,
            dropout=dropout,
        )
        self.fuse = ConvNormAct(
            spatial_dims, self.inception.out_channels, out_channels, 1, norm=norm, act=None
        )
        self.shortcut = projection(spatial_dims, in_channels, out_channels, norm)
        self.act = layers.act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fuse(self.inception(x)) + self.shortcut(x))


class DenseInceptionBlock(nn.Module):
    """DIU-Net's dense-inception block: inception layers connected densely, fused by 1x1 + residual.

    Layer ``k`` is an :class:`InceptionModule` on the concatenation of ``x`` and all previous
    layer outputs, reduced by a 1x1 ``conv-norm-act`` to ``growth_rate`` maps. The final
    concatenation is fused to ``out_channels`` by a 1x1 ``conv-norm`` and added to the shortcut.
    ``(B, in_channels, *S) -> (B, out_channels, *S)``; ``growth_rate=None`` uses
    ``out_channels // 2``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        num_layers: int = 2,
        growth_rate: int | None = None,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        padding: str = "same",
    ):
        super().__init__()
        require_same_padding(padding, "dense-inception block")
        growth = max(1, out_channels // 2) if growth_rate is None else growth_rate
        for name, value in (("growth_rate", growth), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        options = {"norm": norm, "act": act}
        self.layers = nn.ModuleList()
        for k in range(num_layers):
            inception = InceptionModule(
                spatial_dims,
                in_channels + k * growth,
                max(1, growth // 2),
                dropout=dropout,
                **options,
            )
            reduce = ConvNormAct(spatial_dims, inception.out_channels, growth, 1, **options)
            self.layers.append(nn.Sequential(inception, reduce))
        self.fuse = ConvNormAct(
            spatial_dims, in_channels + num_layers * growth, out_channels, 1, norm=norm, act=None
        )
        self.shortcut = projection(spatial_dims, in_channels, out_channels, norm)
        self.act = layers.act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.layers:
            maps.append(layer(torch.cat(maps, dim=1)))
        return self.act(self.fuse(torch.cat(maps, dim=1)) + self.shortcut(x))
