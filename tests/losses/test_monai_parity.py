"""Our losses against MONAI's, on random inputs with matching settings, to 1e-5."""

from __future__ import annotations

import monai.losses as ml
import pytest
import torch

from medseg3d.losses import build_loss

SHAPES = {2: (2, 3, 9, 8), 3: (2, 3, 6, 7, 5)}


def _inputs(spatial_dims: int, channels: int = 3, scale: float = 3.0):
    shape = list(SHAPES[spatial_dims])
    shape[1] = channels
    logits = torch.randn(*shape) * scale
    labels = torch.randint(0, max(channels, 2), (shape[0], 1, *shape[2:]))
    return logits, labels


def _multi_hot(logits: torch.Tensor) -> torch.Tensor:
    return (torch.rand_like(logits) > 0.6).float()


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    assert ours.shape == theirs.reshape(ours.shape).shape
    torch.testing.assert_close(ours, theirs.reshape(ours.shape).float(), atol=1e-5, rtol=1e-5)


DICE_CASES = [
    {},
    {"include_background": False},
    {"squared_pred": True},
    {"jaccard": True},
    {"batch": True},
    {"batch": True, "include_background": False, "jaccard": True},
    {"smooth_nr": 0.0, "smooth_dr": 1e-6},
    {"smooth_nr": 1.0, "smooth_dr": 1.0},
    {"weight": [0.2, 1.0, 3.0]},
    {"weight": [1.0, 3.0], "include_background": False},
    {"reduction": "sum"},
    {"ignore_index": 2},
    {"ignore_index": 255},
]


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("options", DICE_CASES, ids=str)
def test_dice_softmax_matches_monai(spatial_dims, options):
    logits, labels = _inputs(spatial_dims)
    if options.get("ignore_index") == 255:
        labels[:, :, :2] = 255
    ours = build_loss("dice", **options)(logits, labels)
    theirs = ml.DiceLoss(softmax=True, to_onehot_y=True, **options)(logits, labels)
    _close(ours, theirs)


@pytest.mark.parametrize(
    "options", [{}, {"include_background": False}, {"batch": True, "squared_pred": True}]
)
def test_dice_sigmoid_multilabel_matches_monai(options):
    logits, _ = _inputs(3)
    target = _multi_hot(logits)
    ours = build_loss("dice", sigmoid=True, **options)(logits, target)
    _close(ours, ml.DiceLoss(sigmoid=True, **options)(logits, target))


def test_dice_reduction_none_per_sample_and_class():
    logits, labels = _inputs(3)
    ours = build_loss("dice", reduction="none")(logits, labels)
    theirs = ml.DiceLoss(softmax=True, to_onehot_y=True, reduction="none")(logits, labels)
    assert ours.shape == (2, 3)
    _close(ours, theirs)


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"w_type": "simple"},
        {"w_type": "uniform"},
        {"batch": True},
        {"include_background": False},
    ],
    ids=str,
)
def test_generalized_dice_matches_monai(spatial_dims, options):
    logits, labels = _inputs(spatial_dims, channels=4)
    labels[labels == 3] = 1  # class 3 absent: its weight becomes the largest of the others
    ours = build_loss("generalized_dice", **options)(logits, labels)
    _close(ours, ml.GeneralizedDiceLoss(softmax=True, to_onehot_y=True, **options)(logits, labels))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"alpha": 0.3, "beta": 0.7},
        {"include_background": False, "alpha": 0.8, "beta": 0.2},
        {"batch": True},
    ],
    ids=str,
)
def test_tversky_matches_monai(spatial_dims, options):
    logits, labels = _inputs(spatial_dims)
    ours = build_loss("tversky", **options)(logits, labels)
    _close(ours, ml.TverskyLoss(softmax=True, to_onehot_y=True, **options)(logits, labels))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"gamma": 0.0},
        {"gamma": 1.5, "alpha": 0.25},
        {"alpha": [0.1, 0.5, 0.9]},
        {"weight": [0.5, 1.0, 2.0]},
        {"reduction": "sum"},
        {"reduction": "none"},
    ],
    ids=str,
)
def test_focal_softmax_matches_monai(spatial_dims, options):
    logits, labels = _inputs(spatial_dims)
    ours = build_loss("focal", **options)(logits, labels)
    theirs = ml.FocalLoss(use_softmax=True, to_onehot_y=True, **options)(logits, labels)
    _close(ours, theirs)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"include_background": False},
        {"alpha": 0.25, "gamma": 3.0},
        {"alpha": [0.2, 0.4, 0.6]},
        {"weight": [1.0, 2.0], "include_background": False},
    ],
    ids=str,
)
def test_focal_sigmoid_matches_monai(options):
    logits, _ = _inputs(3)
    target = _multi_hot(logits)
    ours = build_loss("focal", sigmoid=True, **options)(logits, target)
    _close(ours, ml.FocalLoss(use_softmax=False, **options)(logits, target))


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"include_background": False},
        {"weight": torch.tensor([0.3, 1.0, 2.0])},
        {"weight": torch.tensor([0.3, 1.0, 2.0]), "include_background": False},
        {"lambda_dice": 0.3, "lambda_ce": 1.7, "batch": True},
        {"label_smoothing": 0.1, "squared_pred": True},
        {"reduction": "sum"},
    ],
    ids=str,
)
def test_dice_ce_matches_monai(spatial_dims, options):
    logits, labels = _inputs(spatial_dims)
    ours = build_loss("dice_ce", **options)(logits, labels)
    _close(ours, ml.DiceCELoss(softmax=True, to_onehot_y=True, **options)(logits, labels))


def test_dice_ce_binary_single_channel_matches_monai():
    logits, labels = _inputs(3, channels=1)
    ours = build_loss("dice_ce", sigmoid=True)(logits, labels)
    _close(ours, ml.DiceCELoss(sigmoid=True)(logits, labels.float()))


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"include_background": False},
        {"gamma": 1.0, "alpha": 0.3, "lambda_focal": 2.0},
        {"weight": [1.0, 2.0, 0.5]},
    ],
    ids=str,
)
def test_dice_focal_sigmoid_matches_monai(options):
    logits, _ = _inputs(3)
    target = _multi_hot(logits)
    ours = build_loss("dice_focal", sigmoid=True, **options)(logits, target)
    _close(ours, ml.DiceFocalLoss(sigmoid=True, **options)(logits, target))


def test_dice_focal_softmax_is_monai_softmax_dice_plus_softmax_focal():
    # MONAI's DiceFocalLoss always uses a sigmoid focal term; ours uses the softmax for both parts.
    logits, labels = _inputs(3)
    ours = build_loss("dice_focal", gamma=2.0, lambda_dice=0.7, lambda_focal=1.3)(logits, labels)
    dice = ml.DiceLoss(softmax=True, to_onehot_y=True)(logits, labels)
    focal = ml.FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2.0)(logits, labels)
    _close(ours, 0.7 * dice + 1.3 * focal)


def test_ce_matches_torch_with_weight_ignore_and_smoothing():
    logits, labels = _inputs(3)
    labels[0, 0, 0] = 255
    weight = [0.2, 1.0, 3.0]
    ours = build_loss("ce", weight=weight, ignore_index=255, label_smoothing=0.05)(logits, labels)
    theirs = torch.nn.functional.cross_entropy(
        logits, labels[:, 0], weight=torch.tensor(weight), ignore_index=255, label_smoothing=0.05
    )
    _close(ours, theirs)


def test_bce_matches_torch():
    logits, _ = _inputs(3)
    target = _multi_hot(logits)
    pos_weight = torch.tensor([1.0, 2.0, 3.0])
    ours = build_loss("bce", pos_weight=[1.0, 2.0, 3.0])(logits, target)
    theirs = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, target, pos_weight=pos_weight.view(1, 3, 1, 1, 1)
    )
    _close(ours, theirs)
