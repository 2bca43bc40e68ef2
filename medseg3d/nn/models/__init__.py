"""U-Net family models: an encoder plus a decoder parametrised by the block type, UNet++, BCDU-Net."""

from __future__ import annotations

from medseg3d.nn.models.base import SegmentationNetwork, feature_widths
from medseg3d.nn.models.bcdu_net import BCDUNet, BiConvLSTMSkip, DenselyConnectedConvs
from medseg3d.nn.models.decoder import Decoder
from medseg3d.nn.models.encoder import Encoder
from medseg3d.nn.models.unet import UNet
from medseg3d.nn.models.unetpp import UNetPlusPlus

__all__ = [
    "BCDUNet",
    "BiConvLSTMSkip",
    "Decoder",
    "DenselyConnectedConvs",
    "Encoder",
    "SegmentationNetwork",
    "UNet",
    "UNetPlusPlus",
    "feature_widths",
]
