"""Overlap (region) losses: soft Dice / Jaccard, generalised Dice and Tversky.

All three reduce the soft confusion counts of each class, summed over space (and over the batch
with ``batch=True``)::

    tp = sum(p * t)    pred = sum(p)  (sum(p**2) with squared_pred)    true = sum(t)

Values and options follow MONAI's ``DiceLoss``, ``GeneralizedDiceLoss`` and ``TverskyLoss``
(``softmax=True``/``sigmoid=True``, ``to_onehot_y`` handled automatically), to 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medseg3d.losses.base import (
    Prepared,
    SegmentationLoss,
    as_class_values,
    check_choice,
    check_nonnegative,
    per_class,
    reduce,
)
from medseg3d.losses.registry import LOSSES


def class_sums(
    prepared: Prepared, *, include_background: bool, batch: bool, squared_pred: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Soft ``(tp, pred, true)`` per class: shape (B, K), or (K,) with ``batch=True``.

    ``K`` is ``C``, or ``C - 1`` when the background channel is excluded. Voxels masked by
    ``ignore_index`` count in neither the prediction nor the target.
    """
    probs, target = prepared.probs, prepared.onehot
    if prepared.drop_background(include_background):
        probs, target = probs[:, 1:], target[:, 1:]
    if prepared.mask is not None:
        probs, target = probs * prepared.mask, target * prepared.mask
    axes = list(range(2, probs.dim()))
    if batch:
        axes = [0, *axes]
    tp = (probs * target).sum(axes)
    pred = (probs * probs if squared_pred else probs).sum(axes)
    true = (target * target if squared_pred else target).sum(axes)
    return tp, pred, true


class DiceLoss(SegmentationLoss):
    """Soft Dice loss ``1 - (2 tp + smooth_nr) / (pred + true + smooth_dr)`` per sample and class.

    Args:
        include_background: count channel 0 (default True, as MONAI).
        sigmoid: per-channel sigmoid (binary / multi-label) instead of softmax over channels.
            One output channel always uses a sigmoid.
        softmax: accepted for MONAI configs; softmax is the default.
        squared_pred: squared terms in the denominator (V-Net).
        jaccard: soft Jaccard (IoU) loss ``1 - (2 tp + nr) / (2 (pred + true - tp) + dr)``.
        smooth_nr, smooth_dr: added to numerator / denominator (an empty class predicted empty
            gives loss 0).
        batch: sum the counts over the batch before dividing (nnU-Net's "batch Dice").
        weight: class weights (scalar, C values, or C - 1 without background) multiplying each
            class's loss before the mean (MONAI's convention: not renormalised).
        ignore_index: label whose voxels are excluded from the loss.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (per-class losses (B, K), or (K,) with batch).
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        sigmoid: bool = False,
        softmax: bool | None = None,
        squared_pred: bool = False,
        jaccard: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
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
        self.squared_pred = bool(squared_pred)
        self.jaccard = bool(jaccard)
        self.smooth_nr = check_nonnegative("smooth_nr", smooth_nr)
        self.smooth_dr = check_nonnegative("smooth_dr", smooth_dr)
        self.batch = bool(batch)
        self.register_buffer("class_weight", as_class_values("weight", weight), persistent=False)

    def compute(self, prepared: Prepared) -> torch.Tensor:
        tp, pred, true = class_sums(
            prepared,
            include_background=self.include_background,
            batch=self.batch,
            squared_pred=self.squared_pred,
        )
        denominator = 2 * (pred + true - tp) if self.jaccard else pred + true
        loss = 1 - (2 * tp + self.smooth_nr) / (denominator + self.smooth_dr)
        weight = per_class(
            self.class_weight,
            prepared.channels,
            prepared.drop_background(self.include_background),
            "weight",
        )
        if weight is not None and loss.shape[-1] > 1:
            loss = loss * weight.to(loss.device)
        return reduce(loss, self.reduction)


class GeneralizedDiceLoss(SegmentationLoss):
    """Generalised Dice loss (Sudre et al. 2017): classes weighted by ``1 / true**2``.

    ``w_type``: ``"square"`` (default) ``1 / true**2``, ``"simple"`` ``1 / true``, ``"uniform"`` 1.
    Classes absent from the target get the largest weight of the others (as MONAI). With
    ``batch=False`` one loss per sample (reduction ``"none"``: shape (B, 1)); with ``batch=True``
    one loss for the batch. Other options as :class:`DiceLoss`.
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        sigmoid: bool = False,
        softmax: bool | None = None,
        w_type: str = "square",
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
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
        self.w_type = check_choice("w_type", w_type, ("square", "simple", "uniform"))
        self.smooth_nr = check_nonnegative("smooth_nr", smooth_nr)
        self.smooth_dr = check_nonnegative("smooth_dr", smooth_dr)
        self.batch = bool(batch)

    def compute(self, prepared: Prepared) -> torch.Tensor:
        tp, pred, true = class_sums(
            prepared, include_background=self.include_background, batch=self.batch
        )
        true = true.detach()
        if self.w_type == "square":
            weight = 1.0 / (true * true)
        elif self.w_type == "simple":
            weight = 1.0 / true
        else:
            weight = torch.ones_like(true)
        absent = torch.isinf(weight)
        weight = weight.masked_fill(absent, 0.0)
        largest = weight.max() if self.batch else weight.max(dim=-1, keepdim=True).values
        weight = torch.where(absent, largest.expand_as(weight), weight)
        numerator = 2.0 * (tp * weight).sum(-1, keepdim=True) + self.smooth_nr
        denominator = ((pred + true) * weight).sum(-1, keepdim=True) + self.smooth_dr
        return reduce(1.0 - numerator / denominator, self.reduction)


class TverskyLoss(SegmentationLoss):
    """Tversky loss ``1 - (tp + nr) / (tp + alpha fp + beta fn + dr)`` (Salehi et al. 2017).

    ``alpha`` weighs false positives, ``beta`` false negatives (0.5 / 0.5 is Dice; raise ``beta``
    to favour recall on small structures). Other options as :class:`DiceLoss`.
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        sigmoid: bool = False,
        softmax: bool | None = None,
        alpha: float = 0.5,
        beta: float = 0.5,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
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
        self.alpha = check_nonnegative("alpha", alpha)
        self.beta = check_nonnegative("beta", beta)
        self.smooth_nr = check_nonnegative("smooth_nr", smooth_nr)
        self.smooth_dr = check_nonnegative("smooth_dr", smooth_dr)
        self.batch = bool(batch)

    def compute(self, prepared: Prepared) -> torch.Tensor:
        tp, pred, true = class_sums(
            prepared, include_background=self.include_background, batch=self.batch
        )
        false_pos, false_neg = pred - tp, true - tp
        denominator = tp + self.alpha * false_pos + self.beta * false_neg + self.smooth_dr
        return reduce(1.0 - (tp + self.smooth_nr) / denominator, self.reduction)


LOSSES.register("dice")(DiceLoss)
LOSSES.register("generalized_dice")(GeneralizedDiceLoss)
LOSSES.register("tversky")(TverskyLoss)
