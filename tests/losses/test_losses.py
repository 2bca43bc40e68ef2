"""Loss behaviour beyond MONAI parity: target layouts, extreme logits, options, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.losses import LOSSES, build_loss, loss_options

NAMES = ["bce", "ce", "dice", "dice_ce", "dice_focal", "focal", "generalized_dice", "tversky"]
SPATIAL = {2: (7, 6), 3: (5, 6, 4)}


def _inputs(spatial_dims: int, channels: int = 3, batch: int = 2):
    spatial = SPATIAL[spatial_dims]
    logits = torch.randn(batch, channels, *spatial)
    labels = torch.randint(0, channels, (batch, 1, *spatial))
    return logits, labels


def _onehot(labels: torch.Tensor, channels: int) -> torch.Tensor:
    return F.one_hot(labels[:, 0], channels).movedim(-1, 1).float()


def test_registry_lists_every_loss():
    assert LOSSES.names() == NAMES


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize("sigmoid", [False, True])
def test_finite_value_and_gradient_at_extreme_logits(name, spatial_dims, sigmoid):
    logits, labels = _inputs(spatial_dims)
    extreme = (torch.randint(0, 2, logits.shape) * 2 - 1).float() * 1e4
    extreme.requires_grad_(True)
    options = {"sigmoid": True} if sigmoid and name not in ("bce", "ce") else {}
    if name == "focal":
        options["gamma"] = 0.5  # (1 - p)**gamma has an unbounded derivative at p = 1
    loss = build_loss(name, **options)(extreme, labels)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(extreme.grad).all()


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_labels_one_hot_and_channelless_labels_agree(name, spatial_dims):
    logits, labels = _inputs(spatial_dims)
    options = {"weight": [0.5, 1.0, 2.0]} if name in ("ce", "dice_ce", "dice", "focal") else {}
    if name == "ce":
        options["label_smoothing"] = 0.1
    loss = build_loss(name, **options)
    reference = loss(logits, labels)
    torch.testing.assert_close(loss(logits, labels[:, 0]), reference)
    torch.testing.assert_close(loss(logits, _onehot(labels, 3)), reference)
    torch.testing.assert_close(loss(logits, labels.float()), reference)  # MONAI loaders give floats


@pytest.mark.parametrize("name", NAMES)
def test_gradient_flows_and_half_precision_is_computed_in_float32(name):
    logits, labels = _inputs(3)
    half = logits.to(torch.bfloat16).requires_grad_(True)
    loss = build_loss(name)(half, labels)
    assert loss.dtype == torch.float32
    loss.backward()
    assert half.grad is not None and torch.isfinite(half.grad.float()).all()


@pytest.mark.parametrize(
    "name", ["dice", "dice_ce", "dice_focal", "generalized_dice", "tversky", "focal", "ce"]
)
def test_perfect_prediction_has_near_zero_loss(name):
    _, labels = _inputs(3)
    logits = _onehot(labels, 3) * 40 - 20
    assert float(build_loss(name)(logits, labels)) < 1e-4


def test_binary_single_channel_uses_sigmoid():
    logits, labels = _inputs(3, channels=1)
    labels = torch.randint(0, 2, labels.shape)
    probs = torch.sigmoid(logits)
    target = labels.float()
    tp = (probs * target).sum((2, 3, 4))
    expected = (1 - (2 * tp + 1e-5) / (probs.sum((2, 3, 4)) + target.sum((2, 3, 4)) + 1e-5)).mean()
    torch.testing.assert_close(build_loss("dice")(logits, labels), expected)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(build_loss("ce")(logits, labels), bce)
    torch.testing.assert_close(build_loss("bce")(logits, target), bce)


def test_sigmoid_with_integer_labels_uses_one_channel_per_label():
    logits, labels = _inputs(3)
    loss = build_loss("bce")
    torch.testing.assert_close(
        loss(logits, labels), F.binary_cross_entropy_with_logits(logits, _onehot(labels, 3))
    )


def test_focal_softmax_without_background_uses_softmax_over_all_channels():
    logits, labels = _inputs(3)
    log_probs = F.log_softmax(logits, 1)
    onehot = _onehot(labels, 3)
    elementwise = -((1 - log_probs.exp()) ** 2) * log_probs * onehot
    expected = elementwise[:, 1:].mean()
    torch.testing.assert_close(
        build_loss("focal", include_background=False)(logits, labels), expected
    )


def test_ignore_index_excludes_voxels_from_every_loss():
    logits, labels = _inputs(3)
    ignored = labels.clone()
    ignored[:, :, :2] = 255
    changed = logits.clone()
    changed[:, :, :2] = torch.randn_like(changed[:, :, :2]) * 10
    for name in NAMES:
        loss = build_loss(name, ignore_index=255)
        torch.testing.assert_close(loss(changed, ignored), loss(logits, ignored), msg=name)


def test_focal_ignore_index_is_the_mean_over_counted_voxels():
    logits, labels = _inputs(3)
    labels[:, :, 0] = 255
    keep = (labels != 255).float()
    log_probs = F.log_softmax(logits, 1)
    onehot = _onehot(torch.where(labels == 255, 0, labels), 3)
    elementwise = -((1 - log_probs.exp()) ** 2) * log_probs * onehot * keep
    expected = elementwise.sum() / (keep.sum() * 3)
    torch.testing.assert_close(build_loss("focal", ignore_index=255)(logits, labels), expected)


def test_build_loss_names_the_bad_option_and_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"squared\b.*allowed: .*squared_pred"):
        build_loss("dice", squared=True)
    with pytest.raises(ConfigError, match="unknown loss 'dcie'.*dice_ce"):
        build_loss("dcie")
    assert "lambda_ce" in loss_options("dice_ce")
    assert "ignore_index" in loss_options("ce")


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("dice", {"sigmoid": True, "softmax": True}, "exclude each other"),
        ("dice_ce", {"lambda_ce": -1}, "lambda_ce must be >= 0"),
        ("focal", {"alpha": 1.5}, "alpha must be in"),
        ("dice", {"reduction": "avg"}, "reduction='avg'"),
        ("dice_ce", {"reduction": "none"}, "reduction='none'"),
        ("dice", {"weight": [1.0, -1.0]}, "weight must be"),
        ("ce", {"ignore_index": 1.5}, "ignore_index"),
        ("generalized_dice", {"w_type": "cube"}, "w_type"),
    ],
)
def test_bad_option_values(name, options, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_loss(name, **options)


def test_shape_and_label_errors_are_one_line_and_say_the_fix():
    logits, labels = _inputs(3)
    with pytest.raises(ShapeError, match="channels"):
        build_loss("dice")(logits, torch.zeros(2, 2, *logits.shape[2:]))
    with pytest.raises(ShapeError, match="does not match"):
        build_loss("dice")(logits, labels[..., :-1])
    with pytest.raises(ShapeError, match=r"labels must lie in \[0, 2\]"):
        build_loss("ce")(logits, labels + 1)
    with pytest.raises(ConfigError, match="weight has 2 values"):
        build_loss("dice", weight=[1.0, 2.0])(logits, labels)


def test_to_onehot_y_is_accepted_for_monai_configs():
    logits, labels = _inputs(2)
    plain = build_loss("dice_ce")(logits, labels)
    torch.testing.assert_close(
        build_loss("dice_ce", to_onehot_y=True, softmax=True)(logits, labels), plain
    )


def test_lambda_zero_gives_the_other_part():
    logits, labels = _inputs(2)
    torch.testing.assert_close(
        build_loss("dice_ce", lambda_dice=0.0)(logits, labels), build_loss("ce")(logits, labels)
    )
    torch.testing.assert_close(
        build_loss("dice_focal", lambda_focal=0.0)(logits, labels),
        build_loss("dice")(logits, labels),
    )


def test_losses_are_plain_modules_and_move_with_their_buffers():
    loss = build_loss("dice_ce", weight=[1.0, 2.0, 3.0])
    assert isinstance(loss, torch.nn.Module)
    assert loss.to(torch.float32).class_weight.dtype == torch.float32
    assert "class_weight" not in loss.state_dict()  # options, not weights to checkpoint


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"include_background": False},
        {"alpha": 0.3, "weight": [1.0, 2.0]},
        {"alpha": [0.2, 0.5, 0.7]},
        {"gamma": 0.0},
    ],
    ids=str,
)
def test_focal_label_fast_path_equals_dense_one_hot_path(options, reduction):
    logits, labels = _inputs(3)
    labels[0, 0, 0] = 255
    if "weight" in options:
        options = {**options, "include_background": False}
    loss = build_loss("focal", ignore_index=255, reduction=reduction, **options)
    onehot = _onehot(torch.where(labels == 255, 0, labels), 3)
    onehot[0, :, 0] = 0.0  # all-zero voxels: masked by an out-of-range ignore_index (MONAI's rule)
    torch.testing.assert_close(loss(logits, labels), loss(logits, onehot))
