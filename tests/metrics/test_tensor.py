"""Torch validation metrics against MONAI's DiceMetric and the numpy metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric

from medseg3d.errors import ShapeError
from medseg3d.metrics import confusion_counts, dice, dice_per_class


def _one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), classes).movedim(-1, 1).float()


@pytest.mark.parametrize("shape", [(3, 9, 8, 7), (2, 12, 10)])
def test_per_sample_dice_matches_monai(shape):
    pred = torch.randint(0, 4, shape)
    gt = torch.randint(0, 4, shape)
    ours = dice_per_class(pred, gt, 4, per_sample=True)
    theirs = DiceMetric(include_background=True, reduction="none")(
        _one_hot(pred, 4), _one_hot(gt, 4)
    )
    assert ours.shape == (shape[0], 4) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, theirs.float())


def test_pooled_dice_matches_numpy_and_counts_accumulate():
    pred = torch.randint(0, 3, (2, 6, 5, 4))
    gt = torch.randint(0, 3, (2, 6, 5, 4))
    pooled = dice_per_class(pred, gt, 3)
    for label in range(3):
        assert float(pooled[label]) == pytest.approx(
            dice((pred == label).numpy(), (gt == label).numpy())
        )
    tp, fp, fn = confusion_counts(pred, gt, 3)
    first = confusion_counts(pred[:1], gt[:1], 3)
    second = confusion_counts(pred[1:], gt[1:], 3)
    for total, a, b in zip((tp, fp, fn), first, second):
        torch.testing.assert_close(total, a + b)
    assert int(tp.sum() + fp.sum()) == pred.numel()


def test_absent_class_scores_one_and_bad_labels_raise():
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    gt = torch.zeros(1, 4, 4, dtype=torch.long)
    gt[0, 0, 0] = 1
    result = dice_per_class(pred, gt, 3)
    np.testing.assert_allclose(result.numpy(), [2 * 15 / 31, 0.0, 1.0], rtol=1e-6)
    with pytest.raises(ShapeError, match="outside"):
        dice_per_class(pred + 3, gt, 3)
    with pytest.raises(ShapeError, match="differ"):
        dice_per_class(pred[:, :2], gt, 3)
