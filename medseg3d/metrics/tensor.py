"""Cheap torch metrics for validation during training (on any device, no gradient).

The Dice here follows the same empty policy as :mod:`medseg3d.metrics.evaluate`: a class absent
from both prediction and ground truth scores 1.0.
"""

from __future__ import annotations

import torch

from medseg3d.errors import ShapeError


def confusion_counts(
    labels_pred: torch.Tensor,
    labels_gt: torch.Tensor,
    num_classes: int,
    *,
    per_sample: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class ``(tp, fp, fn)`` voxel counts (int64) of two label maps of one shape.

    Shapes: any, e.g. ``(B, *spatial)`` or ``(B, 1, *spatial)``; with ``per_sample`` the first
    axis is the batch and the counts have shape ``(B, num_classes)``, else ``(num_classes,)``.
    Summing counts over batches and then calling :func:`dice_from_counts` gives nnU-Net's
    "pseudo Dice" of a whole validation set.
    """
    if labels_pred.shape != labels_gt.shape:
        raise ShapeError(
            f"predicted labels {tuple(labels_pred.shape)} and ground truth {tuple(labels_gt.shape)} differ"
        )
    pred, gt = labels_pred.detach().long(), labels_gt.detach().long()
    for what, labels in (("predicted", pred), ("ground truth", gt)):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ShapeError(
                f"{what} labels range over [{int(labels.min())}, {int(labels.max())}], outside [0, {num_classes - 1}]"
            )
    squares = num_classes * num_classes
    index = gt * num_classes + pred
    samples = pred.shape[0] if per_sample else 1
    if per_sample:
        offsets = torch.arange(samples, device=index.device).view(-1, *([1] * (index.dim() - 1)))
        index = index + offsets * squares
    matrix = torch.bincount(index.flatten(), minlength=samples * squares).view(
        samples, num_classes, num_classes
    )
    tp = matrix.diagonal(dim1=1, dim2=2)
    fp = matrix.sum(1) - tp  # predicted as c, truly something else
    fn = matrix.sum(2) - tp
    if not per_sample:
        return tp[0], fp[0], fn[0]
    return tp, fp, fn


def dice_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``2 tp / (2 tp + fp + fn)`` as float32; 1.0 where a class is absent from both."""
    denominator = (2 * tp + fp + fn).float()
    return torch.where(
        denominator > 0, 2 * tp.float() / denominator.clamp_min(1), torch.ones_like(denominator)
    )


def dice_per_class(
    labels_pred: torch.Tensor,
    labels_gt: torch.Tensor,
    num_classes: int,
    *,
    per_sample: bool = False,
) -> torch.Tensor:
    """Hard Dice of each class (background included, index = label value), float32.

    ``(num_classes,)`` over all voxels of the input, or ``(B, num_classes)`` with ``per_sample``.
    """
    return dice_from_counts(
        *confusion_counts(labels_pred, labels_gt, num_classes, per_sample=per_sample)
    )
