"""Voxel-wise likelihood losses: multi-class cross-entropy and binary / multi-label BCE.

Both work from the logits through ``log_softmax`` / ``log-sigmoid`` (``F.cross_entropy`` and
``F.binary_cross_entropy_with_logits``), so they stay finite at logits of +/-1e4.
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
    check_unit,
    per_class,
    reduce,
)
from medseg3d.losses.registry import LOSSES


def _masked_mean(loss: torch.Tensor, mask: torch.Tensor | None, channels: int = 1) -> torch.Tensor:
    if mask is None:
        return loss.mean()
    return loss.sum() / (mask.sum() * channels).clamp_min(1.0)


def cross_entropy(
    prepared: Prepared,
    *,
    weight: torch.Tensor | None,
    label_smoothing: float,
    reduction: str,
) -> torch.Tensor:
    """Softmax cross-entropy of ``prepared`` (labels as ``F.cross_entropy``; one-hot likewise).

    With integer labels this is exactly ``torch.nn.functional.cross_entropy`` (``weight``,
    ``ignore_index``, ``label_smoothing``); the weighted mean divides by the summed weights of
    the counted voxels. One-hot or soft targets give the same values: the per-voxel loss is
    ``-sum_c w_c t_c' log p_c`` (``t'`` smoothed) and the mean divides by ``sum w_c t_c``.
    """
    logits = prepared.logits
    if weight is not None:
        weight = per_class(weight, prepared.channels, False, "weight")
        weight = (
            weight.to(logits.device)
            if weight.ndim
            else weight.expand(prepared.channels).to(logits.device)
        )
    if prepared.labels is not None:
        labels = prepared.ce_labels()
        ignore = prepared.ignore_index if prepared.mask is not None else -100
        if label_smoothing == 0:
            return F.nll_loss(
                prepared.log_probs, labels, weight=weight, ignore_index=ignore, reduction=reduction
            )
        return F.cross_entropy(
            logits,
            labels,
            weight=weight,
            ignore_index=ignore,
            label_smoothing=label_smoothing,
            reduction=reduction,
        )
    target = prepared.onehot
    loss = F.cross_entropy(
        logits, target, weight=weight, label_smoothing=label_smoothing, reduction="none"
    )
    mask = None if prepared.mask is None else prepared.mask[:, 0]
    if mask is not None:
        loss = loss * mask
    if reduction != "mean":
        return reduce(loss, reduction)
    if weight is None:
        return _masked_mean(loss, mask)
    norm = (target * channel_view(weight, target.dim())).sum(1)
    if mask is not None:
        norm = norm * mask
    return loss.sum() / norm.sum().clamp_min(torch.finfo(norm.dtype).tiny)


def binary_cross_entropy(
    prepared: Prepared,
    *,
    include_background: bool,
    weight: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
    reduction: str,
) -> torch.Tensor:
    """Per-channel sigmoid BCE ``(B, K, *spatial)`` averaged over classes and counted voxels."""
    logits, target = prepared.logits, prepared.onehot
    drop = prepared.drop_background(include_background)
    dims = logits.dim()
    if pos_weight is not None:
        pos_weight = per_class(pos_weight, prepared.channels, False, "pos_weight").to(logits.device)
        pos_weight = channel_view(pos_weight, dims) if pos_weight.ndim else pos_weight
    loss = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=pos_weight, reduction="none"
    )
    if drop:
        loss = loss[:, 1:]
    weight = per_class(weight, prepared.channels, drop, "weight")
    if weight is not None:
        loss = loss * (channel_view(weight, dims) if weight.ndim else weight).to(loss.device)
    if prepared.mask is not None:
        loss = loss * prepared.mask
    if reduction == "mean":
        return _masked_mean(loss, prepared.mask, loss.shape[1])
    return reduce(loss, reduction)


class CrossEntropyLoss(SegmentationLoss):
    """Multi-class cross-entropy from logits ``(B, C, *spatial)`` (softmax over channels).

    Args:
        weight: class weights (C values), as ``torch.nn.CrossEntropyLoss``.
        ignore_index: label whose voxels are excluded (as torch; also masks one-hot targets by
            MONAI's rule: that channel, or all-zero voxels when out of range).
        label_smoothing: in [0, 1], as torch.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (per voxel, (B, *spatial)).

    With a single output channel there is no softmax: the binary cross-entropy is used (as
    MONAI's ``DiceCELoss`` does).
    """

    def __init__(
        self,
        *,
        weight: Sequence[float] | None = None,
        ignore_index: int | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        to_onehot_y: bool | None = None,
    ):
        super().__init__(ignore_index=ignore_index, reduction=reduction)
        self.label_smoothing = check_unit("label_smoothing", label_smoothing)
        self.register_buffer("class_weight", as_class_values("weight", weight), persistent=False)

    def compute(self, prepared: Prepared) -> torch.Tensor:
        if prepared.channels == 1:
            return binary_cross_entropy(
                prepared,
                include_background=True,
                weight=None,
                pos_weight=None,
                reduction=self.reduction,
            )
        return cross_entropy(
            prepared,
            weight=self.class_weight,
            label_smoothing=self.label_smoothing,
            reduction=self.reduction,
        )


class BCELoss(SegmentationLoss):
    """Binary / multi-label cross-entropy with logits: one sigmoid per channel.

    Targets: a 0/1 mask ``(B, 1, *spatial)`` for one channel; multi-hot ``(B, C, *spatial)``; or
    integer labels (one channel per label value). ``weight`` multiplies each class's loss,
    ``pos_weight`` the positive term (as ``torch.nn.BCEWithLogitsLoss``); both take one value or
    one per class. ``include_background=False`` drops channel 0 when there are several.
    ``reduction="none"`` gives (B, K, *spatial).
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        weight: float | Sequence[float] | None = None,
        pos_weight: float | Sequence[float] | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
        to_onehot_y: bool | None = None,
    ):
        super().__init__(
            include_background=include_background,
            sigmoid=True,
            ignore_index=ignore_index,
            reduction=reduction,
        )
        self.register_buffer("class_weight", as_class_values("weight", weight), persistent=False)
        self.register_buffer(
            "pos_weight", as_class_values("pos_weight", pos_weight), persistent=False
        )

    def compute(self, prepared: Prepared) -> torch.Tensor:
        return binary_cross_entropy(
            prepared,
            include_background=self.include_background,
            weight=self.class_weight,
            pos_weight=self.pos_weight,
            reduction=self.reduction,
        )


LOSSES.register("ce")(CrossEntropyLoss)
LOSSES.register("bce")(BCELoss)
