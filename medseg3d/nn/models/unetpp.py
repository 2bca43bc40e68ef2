"""UNet++ (Zhou et al. 2018/2020): nested, densely connected skip pathways, prunable at inference."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn import layers
from medseg3d.nn.blocks.conv import DoubleConv, require_same_padding
from medseg3d.nn.blocks.upsample import UpSample
from medseg3d.nn.init import init_weights
from medseg3d.nn.models.base import SegmentationNetwork
from medseg3d.nn.models.encoder import Encoder


class UNetPlusPlus(SegmentationNetwork):
    """UNet++: node ``X(i, j)`` (level ``i``, column ``j``) is ``block(cat[X(i, 0..j-1),
    up(X(i+1, j-1))])``; ``X(i, 0)`` is the encoder. ``(B, in, *S) -> (B, out, *S)`` logits.

    Heads are 1x1 convolutions on ``X(0, j)``: only ``j = depth`` without deep supervision, all of
    ``j = 1..depth`` with it. In training mode with deep supervision the network returns the list
    ``[head_depth, head_depth-1, ..., head_1]`` (all full resolution; the first is the main output).
    In eval mode it returns one tensor: ``head_depth``, or with ``prune=L`` (``1 <= L <= depth``,
    needs deep supervision) ``head_L`` computed from the sub-network ``X(i, j), i + j <= L`` only,
    exactly as the full network computes it (the paper's pruned inference). ``prune`` can be
    changed on a built model; the weights are always the full network's.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        block: Callable[..., nn.Module] = DoubleConv,
        depth: int = 4,
        features: int | Sequence[int] = 32,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        upsample: str = "transpose",
        padding: str = "same",
        deep_supervision: bool = False,
        prune: int | None = None,
        pool: str = "max",
        name: str = "unetpp",
    ):
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels,
            depth=depth,
            features=features,
            dropout=dropout,
            upsample=upsample,
            padding=padding,
            deep_supervision=deep_supervision,
        )
        require_same_padding(padding, "UNet++ (nested skips of several resolutions)")
        self.name = name
        widths = self.features

        def make_block(in_ch: int, out_ch: int) -> nn.Module:
            return block(spatial_dims, in_ch, out_ch, norm=norm, act=act, dropout=dropout)

        self.encoder = Encoder(spatial_dims, in_channels, widths, make_block, pool=pool)
        self.ups = nn.ModuleDict()
        self.nodes = nn.ModuleDict()
        for column in range(1, depth + 1):
            for level in range(depth - column + 1):
                key = _key(level, column)
                self.ups[key] = UpSample(spatial_dims, widths[level + 1], widths[level], upsample)
                self.nodes[key] = make_block((column + 1) * widths[level], widths[level])
        columns = range(1, depth + 1) if deep_supervision else [depth]
        self.heads = nn.ModuleDict(
            {
                _key(0, column): layers.conv(spatial_dims, widths[0], out_channels, 1)
                for column in columns
            }
        )
        self.prune = prune
        init_weights(self)

    @property
    def prune(self) -> int | None:
        """The level ``L`` kept at inference (None: the full network)."""
        return self._prune

    @prune.setter
    def prune(self, level: int | None) -> None:
        if level is not None:
            if (
                isinstance(level, bool)
                or not isinstance(level, int)
                or not 1 <= level <= self.depth
            ):
                raise ConfigError(
                    f"prune must be a level 1..depth={self.depth} or None, got {level!r}"
                )
            if _key(0, level) not in self.heads:
                raise ConfigError(
                    f"prune={level} needs a head on X(0, {level}): build with deep_supervision=True"
                )
        self._prune = level

    def _nodes(self, x: torch.Tensor, level: int) -> dict[tuple[int, int], torch.Tensor]:
        """All nodes ``X(i, j)`` with ``i + j <= level``."""
        grid = {(i, 0): feature for i, feature in enumerate(self.encoder(x, levels=level))}
        for column in range(1, level + 1):
            for row in range(level - column + 1):
                key = _key(row, column)
                inputs = [grid[(row, k)] for k in range(column)]
                inputs.append(self.ups[key](grid[(row + 1, column - 1)]))
                grid[(row, column)] = self.nodes[key](torch.cat(inputs, dim=1))
        return grid

    def forward_heads(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every head ``[head_1, ..., head_depth]`` (those that exist), in any mode."""
        self.check_input(x)
        grid = self._nodes(x, self.depth)
        return [
            self.heads[_key(0, j)](grid[(0, j)])
            for j in range(1, self.depth + 1)
            if _key(0, j) in self.heads
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        if self.deep_supervision and self.training:
            grid = self._nodes(x, self.depth)
            return [self.heads[_key(0, j)](grid[(0, j)]) for j in range(self.depth, 0, -1)]
        level = self.depth if self.training or self.prune is None else self.prune
        return self.heads[_key(0, level)](self._nodes(x, level)[(0, level)])


def _key(level: int, column: int) -> str:
    return f"x{level}_{column}"
