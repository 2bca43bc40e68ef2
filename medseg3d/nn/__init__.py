"""Networks of the U-Net family, 2D and 3D, built from one layer factory (:mod:`medseg3d.nn.layers`).

>>> from medseg3d.nn import build_model, MODELS
>>> model = build_model("unet", 3, in_channels=1, out_channels=3, features=16, depth=4)
"""

from __future__ import annotations

from medseg3d.nn.models import BCDUNet, SegmentationNetwork, UNet, UNetPlusPlus
from medseg3d.nn.registry import (
    COMMON_OPTIONS,
    MODELS,
    build_model,
    count_parameters,
    model_options,
)
from medseg3d.nn.sizes import (
    check_input_size,
    nearest_valid_sizes,
    valid_input_size,
    valid_output_size,
)

__all__ = [
    "BCDUNet",
    "COMMON_OPTIONS",
    "MODELS",
    "SegmentationNetwork",
    "UNet",
    "UNetPlusPlus",
    "build_model",
    "check_input_size",
    "count_parameters",
    "model_options",
    "nearest_valid_sizes",
    "valid_input_size",
    "valid_output_size",
]
