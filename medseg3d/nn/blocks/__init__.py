"""Building blocks of the U-Net family, each dimension-generic (``spatial_dims`` 2 or 3).

Every block maps ``(B, in_channels, *spatial)`` to ``(B, out_channels, *spatial)`` and takes the
same keyword options (``norm``, ``act``, ``dropout``, ``padding``), so a U-Net is parametrised by
the block class alone.
"""

from __future__ import annotations

from medseg3d.nn.blocks.attention import AttentionGate
from medseg3d.nn.blocks.conv import ConvNormAct, DoubleConv, require_same_padding
from medseg3d.nn.blocks.convlstm import ConvLSTM, ConvLSTMCell
from medseg3d.nn.blocks.dense import DenseBlock
from medseg3d.nn.blocks.inception import DenseInceptionBlock, InceptionModule, InceptionResBlock
from medseg3d.nn.blocks.recurrent import RecurrentBlock, RecurrentConv, RRCNNBlock
from medseg3d.nn.blocks.residual import ResidualBlock, projection
from medseg3d.nn.blocks.skip import center_crop, concat_skip
from medseg3d.nn.blocks.upsample import UPSAMPLE_MODES, UpSample

__all__ = [
    "UPSAMPLE_MODES",
    "AttentionGate",
    "ConvLSTM",
    "ConvLSTMCell",
    "ConvNormAct",
    "DenseBlock",
    "DenseInceptionBlock",
    "DoubleConv",
    "InceptionModule",
    "InceptionResBlock",
    "RRCNNBlock",
    "RecurrentBlock",
    "RecurrentConv",
    "ResidualBlock",
    "UpSample",
    "center_crop",
    "concat_skip",
    "projection",
    "require_same_padding",
]
