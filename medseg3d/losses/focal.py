"""Focal loss (Lin et al. 2017) from logits, safe at extreme logits.

``FL = -alpha_t (1 - p_t)**gamma log(p_t)``. The log-probability comes from ``log_softmax`` /
``log-sigmoid`` and ``1 - p`` from ``-expm1(log p)``, so neither the value nor the gradient
overflows at logits of +/-1e4, and ``gamma < 1`` has a finite gradient where ``p_t`` reaches 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from medseg3d.losses.base import (
    Prepared,
    SegmentationLoss,
    as_class_values,
    channel_view,
    check_nonnegative,
    per_class,
)
from medseg3d.losses.registry import LOSSES

# (1 - p)**gamma is evaluated at max(1 - p, _TINY): keeps d/dp finite for gamma < 1.
_TINY = 1e-12


def focal_terms(
    prepared: Prepared, *, gamma: float, alpha: float | torch.Tensor | None
) -> torch.Tensor:
    """Element-wise focal loss ``(B, C, *spatial)`` for all channels (before any exclusion).

    Softmax: ``-(1 - p_c)**gamma t_c log p_c``; a scalar ``alpha`` weighs the background channel
    ``1 - alpha`` and the others ``alpha``; a sequence gives one factor per channel.
    Sigmoid: ``(1 - p_t)**gamma BCE(x, t)`` with ``p_t`` the probability of the true side; a
    scalar ``alpha`` weighs positives ``alpha`` and negatives ``1 - alpha``; a sequence weighs
    the positives of each channel (as MONAI).
    """
    logits, target = prepared.logits, prepared.onehot
    dims = logits.dim()
    if prepared.sigmoid:
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        if gamma:
            loss = torch.exp(gamma * F.logsigmoid(-logits * (2 * target - 1))) * loss
        if alpha is not None:
            if alpha.ndim == 0:
                loss = (target * alpha + (1 - target) * (1 - alpha)) * loss
            else:
                positive = channel_view(alpha.to(loss.device), dims)
                loss = torch.where(target == 1, positive, torch.ones_like(positive)) * loss
        return loss
    log_probs = prepared.log_probs
    loss = -log_probs * target
    if gamma:
        one_minus_p = (-torch.expm1(log_probs)).clamp_min(_TINY)
        loss = one_minus_p.pow(gamma) * loss
    if alpha is not None:
        if alpha.ndim == 0:
            factor = torch.full((prepared.channels,), float(alpha), device=loss.device)
            factor[0] = 1 - float(alpha)
        else:
            factor = alpha.to(loss.device)
        loss = channel_view(factor, dims) * loss
    return loss


def focal_loss(
    prepared: Prepared,
    *,
    gamma: float,
    alpha: torch.Tensor | None,
    weight: torch.Tensor | None,
    include_background: bool,
    reduction: str,
) -> torch.Tensor:
    """Focal loss reduced like MONAI's ``FocalLoss``: ``"mean"`` over all (B, K, *spatial)
    elements (counted voxels only under ``ignore_index``), ``"sum"`` of the per-channel spatial
    means, ``"none"`` element-wise (B, K, *spatial)."""
    drop = prepared.drop_background(include_background)
    if alpha is not None and alpha.ndim:
        if drop and len(alpha) == prepared.channels - 1:
            alpha = torch.cat([alpha.new_ones(1), alpha])
        alpha = per_class(alpha, prepared.channels, False, "alpha")
    if not prepared.sigmoid and prepared.labels is not None and reduction != "none":
        return _softmax_focal_of_labels(prepared, gamma, alpha, weight, drop, reduction)
    loss = focal_terms(prepared, gamma=gamma, alpha=alpha)
    if drop:
        loss = loss[:, 1:]
    weight = per_class(weight, prepared.channels, drop, "weight")
    dims = loss.dim()
    if weight is not None:
        loss = loss * (channel_view(weight, dims) if weight.ndim else weight).to(loss.device)
    mask = prepared.mask
    if mask is not None:
        loss = loss * mask
    if reduction == "none":
        return loss
    spatial = list(range(2, dims))
    if reduction == "sum":
        if mask is None:
            return loss.mean(spatial).sum()
        return (loss.sum(spatial) / mask.sum(spatial).clamp_min(1.0)).sum()
    if mask is None:
        return loss.mean()
    return loss.sum() / (mask.sum() * loss.shape[1]).clamp_min(1.0)


def _softmax_focal_of_labels(
    prepared: Prepared,
    gamma: float,
    alpha: torch.Tensor | None,
    weight: torch.Tensor | None,
    drop: bool,
    reduction: str,
) -> torch.Tensor:
    """The softmax focal loss of integer labels, from the true class of each voxel only.

    With a hard target only one channel per voxel is non-zero, so the loss is computed on
    ``(B, 1, *spatial)`` instead of ``(B, C, *spatial)`` (about 3x faster) and reduced exactly as
    :func:`focal_loss` reduces the element-wise tensor.
    """
    channels = prepared.channels
    log_p = prepared.log_probs.gather(1, prepared.labels.unsqueeze(1))
    loss = -log_p
    if gamma:
        loss = (-torch.expm1(log_p)).clamp_min(_TINY).pow(gamma) * loss
    factor = torch.ones(channels, device=loss.device)
    if alpha is not None:
        if alpha.ndim == 0:
            factor = torch.full((channels,), float(alpha), device=loss.device)
            factor[0] = 1 - float(alpha)
        else:
            factor = alpha.to(loss.device).clone()
    weight = per_class(weight, channels, drop, "weight")
    if weight is not None:
        weight = weight.to(loss.device)
        factor[int(drop) :] = factor[int(drop) :] * weight
    if drop:
        factor[0] = 0.0
    if alpha is not None or weight is not None or drop:
        loss = factor[prepared.labels].unsqueeze(1) * loss
    kept = channels - 1 if drop else channels
    mask = prepared.mask
    if mask is not None:
        loss = loss * mask
    if reduction == "sum":
        spatial = list(range(2, loss.dim()))
        count = loss[0, 0].numel() if mask is None else mask.sum(spatial).clamp_min(1.0)
        return (loss.sum(spatial) / count).sum()
    count = loss.numel() if mask is None else mask.sum().clamp_min(1.0)
    return loss.sum() / (count * kept)


class FocalLoss(SegmentationLoss):
    """Focal loss from logits ``(B, C, *spatial)``; softmax over channels by default.

    Args:
        gamma: focusing exponent (0 gives cross-entropy / C, as MONAI's mean over channels).
        alpha: balance factor in [0, 1] (see :func:`focal_terms`), or one value per class.
        weight: class weights (scalar, C values, or C - 1 without background).
        include_background: count channel 0. Unlike MONAI, probabilities always come from the
            softmax over *all* channels; the background is dropped afterwards.
        sigmoid: per-channel sigmoid (binary / multi-label); MONAI's ``use_softmax=False``.
        ignore_index: label whose voxels are excluded.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"``.
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        sigmoid: bool = False,
        softmax: bool | None = None,
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        weight: float | Sequence[float] | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
        to_onehot_y: bool | None = None,
    ):
        super().__init__(
            include_background=include_background,
            sigmoid=sigmoid,
            softmax=softmax,
            ignore_index=ignore_index,
            reduction=reduction,
        )
        self.gamma = check_nonnegative("gamma", gamma)
        self.register_buffer("alpha", as_class_values("alpha", alpha, unit=True), persistent=False)
        self.register_buffer("class_weight", as_class_values("weight", weight), persistent=False)

    def compute(self, prepared: Prepared) -> torch.Tensor:
        return focal_loss(
            prepared,
            gamma=self.gamma,
            alpha=self.alpha,
            weight=self.class_weight,
            include_background=self.include_background,
            reduction=self.reduction,
        )


LOSSES.register("focal")(FocalLoss)
