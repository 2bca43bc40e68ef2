"""Weight initialisation shared by all models."""

from __future__ import annotations

from torch import nn

from medseg3d.nn import layers


def init_weights(module: nn.Module, negative_slope: float = 1e-2) -> nn.Module:
    """He (Kaiming) normal initialisation of every convolution, zero biases (nnU-Net's InitWeights_He).

    Returns ``module`` for chaining. Normalisation layers keep PyTorch's defaults (weight 1, bias 0).
    """
    for layer in module.modules():
        if isinstance(layer, layers.CONV_TYPES):
            nn.init.kaiming_normal_(layer.weight, a=negative_slope)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return module
