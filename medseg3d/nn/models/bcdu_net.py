"""BCDU-Net (Azad et al. 2019): bidirectional ConvLSTM skips and a densely connected bottleneck.

"Bi-Directional ConvLSTM U-Net with Densely Connected Convolutions" (ICCV workshops 2019). The
encoder is a U-Net's; the bottleneck is ``D`` conv blocks, each fed the concatenation of all
previous blocks' outputs; at every decoder level the up-sampled map (transposed conv -> norm ->
act) and the encoder map are read as a length-2 sequence ``[skip, up]`` by a bidirectional
ConvLSTM, whose two final hidden states (concatenated) go through the usual double convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn import layers
from medseg3d.nn.blocks.conv import DoubleConv, require_same_padding
from medseg3d.nn.blocks.convlstm import ConvLSTM
from medseg3d.nn.blocks.upsample import UpSample
from medseg3d.nn.init import init_weights
from medseg3d.nn.models.base import SegmentationNetwork
from medseg3d.nn.models.encoder import Encoder


class DenselyConnectedConvs(nn.Module):
    """The BCDU-Net bottleneck: ``num_blocks`` double convolutions, densely connected.

    Block 1 maps ``(B, in_channels, *S)`` to ``out_channels``; block ``k > 1`` takes the
    concatenation of the outputs of blocks ``k-1, ..., 1`` (``(k - 1) * out_channels`` channels),
    as in the paper's D3 network (block 3 sees ``cat[block 2, block 1]``). The output is the last
    block's, ``(B, out_channels, *S)``. ``num_blocks=1`` is a plain U-Net bottleneck.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        num_blocks: int = 3,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        padding: str = "same",
    ):
        super().__init__()
        require_same_padding(padding, "densely connected bottleneck")
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 1:
            raise ConfigError(f"dense_blocks must be an integer >= 1, got {num_blocks!r}")
        options = {"norm": norm, "act": act, "dropout": dropout}
        self.blocks = nn.ModuleList(
            DoubleConv(
                spatial_dims, in_channels if k == 0 else k * out_channels, out_channels, **options
            )
            for k in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [self.blocks[0](x)]
        for block in self.blocks[1:]:
            outputs.append(block(torch.cat(outputs[::-1], dim=1)))
        return outputs[-1]


class BiConvLSTMSkip(nn.Module):
    """One BCDU-Net decoder level: up-sample, read ``[skip, up]`` both ways, double conv.

    ``coarse (B, in_channels, *S/2)`` is up-sampled to ``(B, channels, *S)`` (transposed conv or
    interpolation, then norm and act); with the encoder map ``skip (B, channels, *S)`` it forms
    the sequence ``[skip, up]`` read by a bidirectional :class:`ConvLSTM` of ``hidden_channels``
    per direction; the concatenated final states ``(B, 2 * hidden_channels, *S)`` pass a
    :class:`DoubleConv` to ``(B, channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: int,
        hidden_channels: int,
        *,
        upsample: str = "transpose",
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
    ):
        super().__init__()
        self.up = nn.Sequential(
            UpSample(spatial_dims, in_channels, channels, upsample),
            layers.norm(norm, spatial_dims, channels),
            layers.act(act),
        )
        self.lstm = ConvLSTM(spatial_dims, channels, hidden_channels, 3, bidirectional=True)
        self.conv = DoubleConv(
            spatial_dims, self.lstm.out_channels, channels, norm=norm, act=act, dropout=dropout
        )

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(self.lstm([skip, self.up(coarse)]))


class BCDUNet(SegmentationNetwork):
    """BCDU-Net: ``(B, in_channels, *S) -> (B, out_channels, *S)`` logits, 2D or 3D.

    Encoder: a :class:`DoubleConv` per level with max-pooling between, and at the deepest level
    :class:`DenselyConnectedConvs` of ``dense_blocks`` blocks (the paper's D; 3 by default).
    Decoder: a :class:`BiConvLSTMSkip` per level, ConvLSTM width ``lstm_features`` per direction
    (None: half the level's width, so both directions together have the level's width, as the
    paper's 128 filters at its 256-wide level). Same padding only; every spatial size must be a
    multiple of ``2**depth``. With ``deep_supervision`` a 1x1 head on every decoder level, returned
    as ``[full_res, half_res, ...]`` in training mode; eval mode returns the full-resolution logits.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        *,
        depth: int = 4,
        features: int | Sequence[int] = 32,
        norm: Any = "instance",
        act: Any = "leaky_relu",
        dropout: float = 0.0,
        upsample: str = "transpose",
        padding: str = "same",
        deep_supervision: bool = False,
        dense_blocks: int = 3,
        lstm_features: int | None = None,
        pool: str = "max",
        name: str = "bcdu_net",
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
        require_same_padding(
            padding, "BCDU-Net (its ConvLSTM reads skip and decoder maps of one size)"
        )
        if lstm_features is not None and (
            isinstance(lstm_features, bool)
            or not isinstance(lstm_features, int)
            or lstm_features < 1
        ):
            raise ConfigError(
                f"lstm_features must be a positive integer or None, got {lstm_features!r}"
            )
        self.name = name
        self.dense_blocks = dense_blocks
        widths = self.features
        options = {"norm": norm, "act": act, "dropout": dropout}

        def make_block(in_ch: int, out_ch: int) -> nn.Module:
            return DoubleConv(spatial_dims, in_ch, out_ch, **options)

        def make_bottleneck(in_ch: int, out_ch: int) -> nn.Module:
            return DenselyConnectedConvs(
                spatial_dims, in_ch, out_ch, num_blocks=dense_blocks, **options
            )

        self.encoder = Encoder(
            spatial_dims, in_channels, widths, make_block, bottleneck=make_bottleneck, pool=pool
        )
        self.decoder = nn.ModuleList(
            BiConvLSTMSkip(
                spatial_dims,
                widths[level + 1],
                widths[level],
                lstm_features or max(1, widths[level] // 2),
                upsample=upsample,
                **options,
            )
            for level in range(depth)
        )
        self.heads = nn.ModuleList(
            layers.conv(spatial_dims, widths[level], out_channels, 1)
            for level in range(depth if deep_supervision else 1)
        )
        init_weights(self)
        for module in self.modules():
            if isinstance(module, ConvLSTM):
                module.reset_forget_bias()  # init_weights zeroed every bias

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        self.check_input(x)
        supervise = self.deep_supervision and self.training
        skips = self.encoder(x)
        decoded = skips[-1]
        logits: list[torch.Tensor] = []
        for level in reversed(range(self.depth)):
            decoded = self.decoder[level](decoded, skips[level])
            if supervise or level == 0:
                logits.append(self.heads[level](decoded))
        if not supervise:
            return logits[-1]
        return logits[::-1]  # [full_res, half_res, ...]
