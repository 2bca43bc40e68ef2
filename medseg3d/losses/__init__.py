"""Segmentation losses from logits, with MONAI's option names.

>>> from medseg3d.losses import build_loss, DeepSupervisionLoss
>>> loss = build_loss("dice_ce", include_background=False)
>>> value = loss(logits, labels)           # logits (B, C, *spatial), labels (B, 1, *spatial)
>>> ds = DeepSupervisionLoss(loss)          # ds([full, half, quarter], labels)

Every loss is a plain ``nn.Module`` with ``forward(logits, target)``; the target may be integer
labels ``(B, 1, *spatial)`` / ``(B, *spatial)`` or one-hot ``(B, C, *spatial)``. Softmax over
channels by default, ``sigmoid=True`` for binary / multi-label outputs. See docs/losses.md.
"""

from __future__ import annotations

from medseg3d.losses.base import Prepared, SegmentationLoss
from medseg3d.losses.compound import DiceCELoss, DiceFocalLoss
from medseg3d.losses.cross_entropy import BCELoss, CrossEntropyLoss
from medseg3d.losses.deep_supervision import DeepSupervisionLoss, resize_target
from medseg3d.losses.dice import DiceLoss, GeneralizedDiceLoss, TverskyLoss
from medseg3d.losses.focal import FocalLoss
from medseg3d.losses.registry import LOSSES, build_loss, loss_options

__all__ = [
    "LOSSES",
    "BCELoss",
    "CrossEntropyLoss",
    "DeepSupervisionLoss",
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceLoss",
    "FocalLoss",
    "GeneralizedDiceLoss",
    "Prepared",
    "SegmentationLoss",
    "TverskyLoss",
    "build_loss",
    "loss_options",
    "resize_target",
]
