"""A small convolutional discriminator of (image, mask) pairs for adversarial training.

As in Luc et al. 2016 ("Semantic Segmentation using Adversarial Networks") and SegAN (Xue et al.
2018): the discriminator sees an image concatenated with a class-probability map — either the
ground truth one-hot or the segmentation network's softmax — and returns one logit per sample
(real > 0). Strided conv-norm-act stages from the layer factory, then global average pooling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from medseg3d.nn import layers


class MaskDiscriminator(nn.Module):
    """``forward(image (B, C_img, *spatial), masks (B, C_cls, *spatial)) -> (B,)`` logits.

    Args:
        spatial_dims: 2 or 3.
        image_channels, num_classes: channels of the two inputs.
        features: width of the first stage, doubled per stage.
        stages: number of stride-2 stages.
        norm, act: as in the layer factory (instance norm and leaky ReLU by default; no batch
            norm, which would let the discriminator tell real from fake batches by statistics).
    """

    def __init__(
        self,
        spatial_dims: int,
        image_channels: int,
        num_classes: int,
        *,
        features: int = 16,
        stages: int = 4,
        norm: Any = "instance",
        act: Any = ("leaky_relu", {"negative_slope": 0.2}),
    ):
        super().__init__()
        self.spatial_dims = layers.check_spatial_dims(spatial_dims)
        blocks: list[nn.Module] = []
        channels = image_channels + num_classes
        for stage in range(stages):
            width = features * 2**stage
            blocks += [
                layers.conv(spatial_dims, channels, width, 3, stride=2, padding=1),
                layers.norm(norm if stage else None, spatial_dims, width),
                layers.act(act),
            ]
            channels = width
        self.features = nn.Sequential(*blocks)
        self.pool = layers.adaptive_avg_pool(spatial_dims, 1)
        self.head = nn.Linear(channels, 1)

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        x = self.features(torch.cat([image, masks.to(image.dtype)], dim=1))
        return self.head(self.pool(x).flatten(1)).squeeze(1)
