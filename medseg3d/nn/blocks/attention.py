"""Additive attention gate of Attention U-Net (Oktay et al. 2018)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg3d.nn import layers


class AttentionGate(nn.Module):
    """Scale a skip connection by attention coefficients computed with the coarser gating signal.

    ``x``: skip ``(B, skip_channels, *S)``; ``g``: gating signal from the next coarser decoder
    level ``(B, gate_channels, *S/2)``. As in the paper, ``theta`` (2x2 conv, stride 2) brings
    ``x`` to the gate's grid, ``phi`` (1x1) projects ``g``; ``alpha = sigmoid(psi(relu(theta +
    phi)))`` is resampled (linear) back to ``S`` and the gated skip ``alpha * x`` passes a 1x1
    ``conv-norm``. Returns ``(B, skip_channels, *S)``; :meth:`coefficients` gives ``alpha``
    ``(B, 1, *S)`` for visualisation.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        gate_channels: int,
        inter_channels: int | None = None,
        *,
        norm: Any = "instance",
    ):
        super().__init__()
        inter = max(1, skip_channels // 2) if inter_channels is None else inter_channels
        self.theta = layers.conv(
            spatial_dims, skip_channels, inter, 2, stride=2, padding="valid", bias=False
        )
        self.phi = layers.conv(spatial_dims, gate_channels, inter, 1)
        self.psi = layers.conv(spatial_dims, inter, 1, 1)
        self.out = nn.Sequential(
            layers.conv(spatial_dims, skip_channels, skip_channels, 1),
            layers.norm(norm, spatial_dims, skip_channels),
        )

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``alpha`` in (0, 1), shape ``(B, 1, *x.spatial)``."""
        theta = self.theta(x)
        phi = self.phi(g)
        if phi.shape[2:] != theta.shape[2:]:  # odd sizes (valid padding)
            phi = layers.resize(phi, theta.shape[2:])
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        return layers.resize(alpha, x.shape[2:])

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.out(x * self.coefficients(x, g))
