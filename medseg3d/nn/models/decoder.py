"""The expanding path, derived from the encoder's widths: up-sample, fuse the skip, block, head."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from medseg3d.nn import layers
from medseg3d.nn.blocks.skip import center_crop, concat_skip
from medseg3d.nn.blocks.upsample import UpSample
from medseg3d.nn.models.encoder import BlockFactory

GateFactory = Callable[[int, int], nn.Module]  # (skip_channels, gate_channels) -> gate


class Decoder(nn.Module):
    """Encoder maps ``[(B, f0, *S), ..., (B, f_depth, *S/2**depth)]`` -> logits per level.

    Level ``l`` (from ``depth - 1`` down to 0): up-sample the coarser map to ``f_l`` channels,
    center-crop the skip (valid padding), gate it (``attention``), concatenate ``[skip, up]``
    and apply ``block(2 * f_l, f_l)``. A 1x1 head gives ``(B, out_channels, *S_l)``; with
    ``deep_supervision`` every level has a head.
    """

    def __init__(
        self,
        spatial_dims: int,
        features: Sequence[int],
        out_channels: int,
        block: BlockFactory,
        *,
        upsample: str = "transpose",
        attention: GateFactory | None = None,
        deep_supervision: bool = False,
    ):
        super().__init__()
        depth = len(features) - 1
        self.ups = nn.ModuleList(
            UpSample(spatial_dims, features[level + 1], features[level], upsample)
            for level in range(depth)
        )
        self.gates = None
        if attention is not None:
            self.gates = nn.ModuleList(
                attention(features[level], features[level + 1]) for level in range(depth)
            )
        self.stages = nn.ModuleList(
            block(2 * features[level], features[level]) for level in range(depth)
        )
        self.heads = nn.ModuleList(
            layers.conv(spatial_dims, features[level], out_channels, 1)
            for level in range(depth if deep_supervision else 1)
        )

    def forward(self, skips: Sequence[torch.Tensor], all_heads: bool = False) -> list[torch.Tensor]:
        """Logits ``[full_res, half_res, ...]`` (all heads) or ``[full_res]``."""
        x = skips[-1]
        decoded: list[torch.Tensor] = [x] * (len(skips) - 1)
        for level in reversed(range(len(self.stages))):
            up = self.ups[level](x)
            skip = skips[level]
            if self.gates is not None:
                skip = self.gates[level](center_crop(skip, up.shape[2:]), x)
            x = self.stages[level](concat_skip(skip, up))
            decoded[level] = x
        count = len(self.heads) if all_heads else 1
        return [self.heads[level](decoded[level]) for level in range(count)]
