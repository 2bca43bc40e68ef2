"""Dice + cross-entropy and Dice + focal: ``lambda_dice * Dice + lambda_other * other``.

Both parts share one :class:`~medseg3d.losses.base.Prepared` (one softmax, one one-hot target).
Differences from MONAI, where MONAI's behaviour would surprise (documented in docs/losses.md):

* ``sigmoid=True`` with several channels uses the per-channel BCE (MONAI's ``DiceCELoss`` uses
  the softmax cross-entropy for any number of channels);
* ``DiceFocalLoss`` uses the same activation for both parts (MONAI's always uses a sigmoid
  focal term, even with ``softmax=True``);
* ``ignore_index`` is supported by both parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medseg3d.losses.base import (
    Prepared,
    SegmentationLoss,
    as_class_values,
    check_nonnegative,
    check_unit,
)
from medseg3d.losses.cross_entropy import binary_cross_entropy, cross_entropy
from medseg3d.losses.dice import DiceLoss
from medseg3d.losses.focal import focal_loss
from medseg3d.losses.registry import LOSSES


class DiceCELoss(SegmentationLoss):
    """``lambda_dice * Dice + lambda_ce * CE`` (softmax) or ``* BCE`` (sigmoid / one channel).

    Dice options as :class:`~medseg3d.losses.dice.DiceLoss`. ``weight`` (C values) is the class
    weight of both parts (the Dice part drops the background entry when it excludes the
    background, as MONAI); ``label_smoothing`` and ``pos_weight`` apply to the CE / BCE part;
    ``include_background`` applies to the Dice part and, with a sigmoid, to the BCE part.
    ``reduction``: ``"mean"`` | ``"sum"``.
    """

    reductions = ("mean", "sum")

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
        weight: Sequence[float] | None = None,
        pos_weight: float | Sequence[float] | None = None,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        label_smoothing: float = 0.0,
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
        self.dice = DiceLoss(
            include_background=include_background,
            sigmoid=sigmoid,
            squared_pred=squared_pred,
            jaccard=jaccard,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
        )
        self.lambda_dice = check_nonnegative("lambda_dice", lambda_dice)
        self.lambda_ce = check_nonnegative("lambda_ce", lambda_ce)
        self.label_smoothing = check_unit("label_smoothing", label_smoothing)
        self.register_buffer("class_weight", as_class_values("weight", weight), persistent=False)
        self.register_buffer(
            "pos_weight", as_class_values("pos_weight", pos_weight), persistent=False
        )

    def compute(self, prepared: Prepared) -> torch.Tensor:
        total = prepared.logits.new_zeros(())
        if self.lambda_dice:
            total = total + self.lambda_dice * self.dice.compute(prepared)
        if self.lambda_ce:
            if prepared.sigmoid:
                ce = binary_cross_entropy(
                    prepared,
                    include_background=self.include_background,
                    weight=self.class_weight if prepared.channels > 1 else None,
                    pos_weight=self.pos_weight,
                    reduction=self.reduction,
                )
            else:
                ce = cross_entropy(
                    prepared,
                    weight=self.class_weight,
                    label_smoothing=self.label_smoothing,
                    reduction=self.reduction,
                )
            total = total + self.lambda_ce * ce
        return total


class DiceFocalLoss(SegmentationLoss):
    """``lambda_dice * Dice + lambda_focal * Focal`` with the same activation for both.

    Dice options as :class:`~medseg3d.losses.dice.DiceLoss`; ``gamma`` and ``alpha`` as
    :class:`~medseg3d.losses.focal.FocalLoss`; ``weight`` and ``include_background`` apply to
    both parts. ``reduction``: ``"mean"`` | ``"sum"``.
    """

    reductions = ("mean", "sum")

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
        gamma: float = 2.0,
        alpha: float | Sequence[float] | None = None,
        weight: float | Sequence[float] | None = None,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
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
        self.dice = DiceLoss(
            include_background=include_background,
            sigmoid=sigmoid,
            squared_pred=squared_pred,
            jaccard=jaccard,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
        )
        self.gamma = check_nonnegative("gamma", gamma)
        self.lambda_dice = check_nonnegative("lambda_dice", lambda_dice)
        self.lambda_focal = check_nonnegative("lambda_focal", lambda_focal)
        self.register_buffer("alpha", as_class_values("alpha", alpha, unit=True), persistent=False)
        self.register_buffer("class_weight", as_class_values("weight", weight), persistent=False)

    def compute(self, prepared: Prepared) -> torch.Tensor:
        total = prepared.logits.new_zeros(())
        if self.lambda_dice:
            total = total + self.lambda_dice * self.dice.compute(prepared)
        if self.lambda_focal:
            focal = focal_loss(
                prepared,
                gamma=self.gamma,
                alpha=self.alpha,
                weight=self.class_weight,
                include_background=self.include_background,
                reduction=self.reduction,
            )
            total = total + self.lambda_focal * focal
        return total


LOSSES.register("dice_ce")(DiceCELoss)
LOSSES.register("dice_focal")(DiceFocalLoss)
