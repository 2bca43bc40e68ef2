"""Deep supervision: one loss summed over the outputs of several decoder levels.

A deeply supervised network returns ``[full_res, half_res, quarter_res, ...]`` while training.
Each output is compared with the target resized to its size, and the level losses are summed with
weights halving per level (1, 1/2, 1/4, ...) normalised to sum to 1 (as nnU-Net, which also drops
the lowest level; pass ``weights`` to do the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.nn.layers import resize


def resize_target(target: torch.Tensor, size: Sequence[int], spatial_dims: int) -> torch.Tensor:
    """``target`` resized to the spatial ``size``.

    Single-channel targets (integer labels ``(B, 1, *spatial)`` / ``(B, *spatial)`` or a binary
    mask) by nearest neighbour, keeping their dtype; one-hot / multi-label targets
    ``(B, C, *spatial)`` by area pooling (the fraction of each class per output voxel, a soft
    target).
    """
    size = tuple(int(s) for s in size)
    if tuple(target.shape[-spatial_dims:]) == size:
        return target
    if target.dim() == spatial_dims + 1:
        target = target.unsqueeze(1)
    if target.dim() != spatial_dims + 2:
        raise ShapeError(
            f"target of shape {tuple(target.shape)} does not fit {spatial_dims}D outputs"
        )
    if target.shape[1] == 1:
        return resize(target.float(), size, kind="nearest").to(target.dtype)
    return F.interpolate(target.float(), size=size, mode="area")


class DeepSupervisionLoss(nn.Module):
    """Wrap ``loss`` to take a list of outputs ``[(B, C, *s0), (B, C, *s1), ...]`` or one tensor.

    Args:
        loss: any loss ``loss(logits, target)``, e.g. ``build_loss("dice_ce")``.
        weights: per-level weights (at least as many as outputs; extra ones are ignored), or None
            for 1, 1/2, 1/4, ... The weights used are always normalised to sum to 1.

    ``forward(outputs, target)``: ``target`` at full resolution (the size of ``outputs[0]``,
    else a :class:`ShapeError`); it is resized once per distinct output size (see
    :func:`resize_target`). Every output size must divide the full one by a whole factor per axis
    (what same-padding networks return); the heads of a ``padding="valid"`` network cover
    different regions and are refused with a :class:`ShapeError`.
    """

    def __init__(self, loss: nn.Module, weights: Sequence[float] | None = None):
        super().__init__()
        if not callable(loss):
            raise ConfigError(f"DeepSupervisionLoss needs a loss module, got {loss!r}")
        self.loss = loss
        if weights is not None:
            weights = [float(w) for w in weights]
            if not weights or any(not w >= 0 for w in weights) or sum(weights) <= 0:
                raise ConfigError(
                    f"deep supervision weights must be >= 0 with a positive sum, got {weights!r}"
                )
        self.weights = weights

    def level_weights(self, levels: int) -> list[float]:
        """The normalised weights of ``levels`` outputs."""
        if self.weights is None:
            raw = [0.5**level for level in range(levels)]
        elif len(self.weights) < levels:
            raise ConfigError(
                f"deep supervision has {levels} outputs but only {len(self.weights)} weights; "
                "give one weight per output"
            )
        else:
            raw = self.weights[:levels]
        total = sum(raw)
        if total <= 0:
            raise ConfigError(f"deep supervision weights {raw!r} for {levels} outputs sum to 0")
        return [w / total for w in raw]

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        if len(outputs) == 0:
            raise ShapeError("deep supervision got an empty list of outputs")
        spatial_dims = outputs[0].dim() - 2
        full = tuple(outputs[0].shape[2:])
        if tuple(target.shape[-spatial_dims:]) != full:
            raise ShapeError(
                f"deep supervision target of shape {tuple(target.shape)} does not match the "
                f"full-resolution output outputs[0] of spatial size {full}: give the target at "
                "that size (it is resized for the other outputs)"
            )
        resized: dict[tuple[int, ...], torch.Tensor] = {}
        total = None
        for index, (weight, output) in enumerate(zip(self.level_weights(len(outputs)), outputs)):
            size = tuple(output.shape[2:])
            if len(size) != len(full) or any(f % s for f, s in zip(full, size)):
                raise ShapeError(
                    f"outputs[{index}] has spatial size {size}, not the full-resolution size "
                    f"{full} divided by a whole factor, so a resized target would not line up "
                    "with it (padding='valid' heads each need their own centre-cropped target; "
                    "see docs/losses.md)"
                )
            if weight == 0:
                continue
            if size not in resized:
                resized[size] = resize_target(target, size, spatial_dims)
            term = weight * self.loss(output, resized[size])
            total = term if total is None else total + term
        return total
