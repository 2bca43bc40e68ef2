"""Decoder up-sampling: transposed convolution, or linear interpolation + 1x1 convolution."""

from __future__ import annotations

import torch
from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn import layers

UPSAMPLE_MODES = ("transpose", "interp")


class UpSample(nn.Module):
    """Double every spatial size: ``(B, in_channels, *S) -> (B, out_channels, *2S)``.

    ``"transpose"``: a 2x2 transposed convolution with stride 2 (the 2015 "up-convolution").
    ``"interp"``: a 1x1 convolution then (bi/tri)linear interpolation, which equals interpolation
    then 1x1 convolution (both are linear and interpolation weights sum to one) at 1/2**d the cost.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, mode: str = "transpose"
    ):
        super().__init__()
        if mode == "transpose":
            self.up = layers.conv_transpose(spatial_dims, in_channels, out_channels, 2, stride=2)
        elif mode == "interp":
            self.up = nn.Sequential(
                layers.conv(spatial_dims, in_channels, out_channels, 1),
                layers.upsample(spatial_dims, 2, kind="linear"),
            )
        else:
            raise ConfigError(
                f"unknown upsample {mode!r}; choose one of: {', '.join(UPSAMPLE_MODES)}"
            )
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(x)
