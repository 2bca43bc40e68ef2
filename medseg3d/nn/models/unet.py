"""One generic U-Net: encoder + decoder, parametrised by the block type (and attention gates).

``unet``, ``attention_unet``, ``residual_unet``, ``recurrent_unet``, ``r2unet``, ``dense_unet`` and
``inception_unet`` are all this class with a different ``block`` (see :mod:`medseg3d.nn.registry`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from medseg3d.nn.blocks.attention import AttentionGate
from medseg3d.nn.blocks.conv import DoubleConv
from medseg3d.nn.init import init_weights
from medseg3d.nn.models.base import SegmentationNetwork
from medseg3d.nn.models.decoder import Decoder
from medseg3d.nn.models.encoder import Encoder


class UNet(SegmentationNetwork):
    """U-Net (Ronneberger et al. 2015) over any block: ``(B, in, *S) -> (B, out, *S')`` logits.

    ``block`` is a class or callable ``block(spatial_dims, in_channels, out_channels, *, norm, act,
    dropout, padding, **block_options)``; ``bottleneck`` (same signature) replaces it at the
    deepest level. ``attention=True`` gates every skip with an :class:`AttentionGate`.
    ``S' = S`` with ``padding="same"`` (sizes must be multiples of ``2**depth``), smaller with
    ``"valid"`` (see :func:`medseg3d.nn.valid_output_size`). With ``deep_supervision`` the network
    returns ``[full_res, half_res, ...]`` (``depth`` maps) in training mode and the full-resolution
    logits alone in eval mode.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        block: Callable[..., nn.Module] = DoubleConv,
        block_options: dict[str, Any] | None = None,
        bottleneck: Callable[..., nn.Module] | None = None,
        depth: int = 4,
        features: int | Sequence[int] = 32,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        upsample: str = "transpose",
        padding: str = "same",
        deep_supervision: bool = False,
        attention: bool = False,
        pool: str = "max",
        name: str = "unet",
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
        self.name = name
        options = {"norm": norm, "act": act, "dropout": dropout, "padding": padding}
        options.update(block_options or {})

        def make_block(in_ch: int, out_ch: int) -> nn.Module:
            return block(spatial_dims, in_ch, out_ch, **options)

        make_bottleneck = None
        if bottleneck is not None:

            def make_bottleneck(in_ch: int, out_ch: int) -> nn.Module:
                return bottleneck(spatial_dims, in_ch, out_ch, **options)

        def make_gate(skip_channels: int, gate_channels: int) -> nn.Module:
            return AttentionGate(spatial_dims, skip_channels, gate_channels, norm=norm)

        self.encoder = Encoder(
            spatial_dims,
            in_channels,
            self.features,
            make_block,
            bottleneck=make_bottleneck,
            pool=pool,
        )
        self.decoder = Decoder(
            spatial_dims,
            self.features,
            out_channels,
            make_block,
            upsample=upsample,
            attention=make_gate if attention else None,
            deep_supervision=deep_supervision,
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        supervise = self.deep_supervision and self.training
        logits = self.decoder(self.encoder(x), all_heads=supervise)
        return logits if supervise else logits[0]
