"""Dense block (Huang et al. 2017) as used in dense U-Nets."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn.blocks.conv import ConvNormAct, require_same_padding


class DenseBlock(nn.Module):
    """``num_layers`` 3x3 ``conv-norm-act`` layers, each fed the concatenation of all previous maps.

    Layer ``k`` maps ``in_channels + k * growth_rate`` channels to ``growth_rate``; a 1x1
    ``conv-norm-act`` fuses the final concatenation (``in_channels + num_layers * growth_rate``)
    to ``out_channels``. ``(B, in_channels, *S) -> (B, out_channels, *S)``; same padding only.
    ``growth_rate=None`` uses ``out_channels // 2``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        growth_rate: int | None = None,
        num_layers: int = 3,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        padding: str = "same",
    ):
        super().__init__()
        require_same_padding(padding, "dense block")
        growth = max(1, out_channels // 2) if growth_rate is None else growth_rate
        for name, value in (("growth_rate", growth), ("dense_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        options = {"norm": norm, "act": act, "dropout": dropout}
        self.layers = nn.ModuleList(
            ConvNormAct(spatial_dims, in_channels + k * growth, growth, 3, **options)
            for k in range(num_layers)
        )
        self.fuse = ConvNormAct(
            spatial_dims, in_channels + num_layers * growth, out_channels, 1, norm=norm, act=act
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = [x]
        for layer in self.layers:
            maps.append(layer(torch.cat(maps, dim=1)))
        return self.fuse(torch.cat(maps, dim=1))
