"""The contracting path: one block per level, pooling between levels."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from medseg3d.nn import layers

BlockFactory = Callable[[int, int], nn.Module]  # (in_channels, out_channels) -> block


class Encoder(nn.Module):
    """``(B, in_channels, *S)`` -> one map per level ``[(B, f0, *S), (B, f1, *S/2), ...]``.

    ``features`` gives the width of each level (``depth + 1`` levels; the last is the bottleneck);
    ``block(in, out)`` builds a level's block, ``bottleneck(in, out)`` the last one when given.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        features: Sequence[int],
        block: BlockFactory,
        *,
        bottleneck: BlockFactory | None = None,
        pool: str = "max",
    ):
        super().__init__()
        self.features = list(features)
        self.pools = nn.ModuleList(layers.pool(pool, spatial_dims, 2) for _ in self.features[1:])
        self.stages = nn.ModuleList()
        previous = in_channels
        for level, width in enumerate(self.features):
            last = level == len(self.features) - 1
            make = bottleneck if last and bottleneck is not None else block
            self.stages.append(make(previous, width))
            previous = width

    def forward(self, x: torch.Tensor, levels: int | None = None) -> list[torch.Tensor]:
        """Maps of levels ``0..levels`` (all levels by default)."""
        count = len(self.stages) if levels is None else levels + 1
        outputs = []
        for level in range(count):
            if level:
                x = self.pools[level - 1](x)
            x = self.stages[level](x)
            outputs.append(x)
        return outputs
