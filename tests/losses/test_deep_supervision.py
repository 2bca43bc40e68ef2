"""DeepSupervisionLoss: halving normalised weights, per-output target resizing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.losses import DeepSupervisionLoss, build_loss, resize_target
from medseg3d.nn import build_model


def _outputs(spatial_dims: int, sizes=(8, 4, 2), channels: int = 3):
    return [torch.randn(2, channels, *([s] * spatial_dims), requires_grad=True) for s in sizes]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_weighted_sum_of_levels_with_nearest_labels(spatial_dims):
    outputs = _outputs(spatial_dims)
    labels = torch.randint(0, 3, (2, 1, *([8] * spatial_dims)))
    base = build_loss("dice_ce")
    loss = DeepSupervisionLoss(base)
    index = (slice(None), slice(None)) + (slice(None, None, 2),) * spatial_dims
    half = labels[index]
    quarter = half[index]
    expected = (
        4 * base(outputs[0], labels) + 2 * base(outputs[1], half) + base(outputs[2], quarter)
    ) / 7
    value = loss(outputs, labels)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert all(o.grad is not None for o in outputs)
    assert loss.level_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_one_hot_targets_are_area_pooled():
    onehot = F.one_hot(torch.randint(0, 3, (1, 4, 4, 4)), 3).movedim(-1, 1).float()
    pooled = resize_target(onehot, (2, 2, 2), 3)
    torch.testing.assert_close(pooled, F.avg_pool3d(onehot, 2))
    torch.testing.assert_close(pooled.sum(1), torch.ones(1, 2, 2, 2))


def test_label_targets_keep_dtype_and_channelless_labels_are_accepted():
    labels = torch.randint(0, 3, (2, 8, 8, 8))
    resized = resize_target(labels, (4, 4, 4), 3)
    assert resized.dtype == labels.dtype and resized.shape == (2, 1, 4, 4, 4)
    outputs = _outputs(3)
    loss = DeepSupervisionLoss(build_loss("dice"))
    torch.testing.assert_close(loss(outputs, labels), loss(outputs, labels[:, None]))


def test_single_tensor_is_the_plain_loss():
    output = _outputs(3)[0]
    labels = torch.randint(0, 3, (2, 1, 8, 8, 8))
    base = build_loss("dice_focal")
    torch.testing.assert_close(DeepSupervisionLoss(base)(output, labels), base(output, labels))


def test_explicit_weights_are_normalised_and_zero_levels_skipped():
    outputs = _outputs(3)
    labels = torch.randint(0, 3, (2, 1, 8, 8, 8))
    base = build_loss("ce")
    value = DeepSupervisionLoss(base, weights=[2.0, 2.0, 0.0, 5.0])(outputs, labels)
    expected = 0.5 * base(outputs[0], labels) + 0.5 * base(outputs[1], labels[:, :, ::2, ::2, ::2])
    torch.testing.assert_close(value, expected)


def test_weight_errors():
    with pytest.raises(ConfigError, match="only 2 weights"):
        DeepSupervisionLoss(build_loss("dice"), weights=[1.0, 0.5]).level_weights(3)
    with pytest.raises(ConfigError, match="positive sum"):
        DeepSupervisionLoss(build_loss("dice"), weights=[0.0, -1.0])


def test_a_target_not_at_the_size_of_the_first_output_is_a_shape_error():
    loss = DeepSupervisionLoss(build_loss("dice_ce"))
    with pytest.raises(ShapeError, match=r"target of shape \(2, 1, 16, 16\) .* size \(8, 8\)"):
        loss(_outputs(2), torch.randint(0, 3, (2, 1, 16, 16)))
    with pytest.raises(ShapeError, match=r"\(2, 8, 8, 6\) .* size \(8, 8, 8\)"):
        loss(_outputs(3), torch.randint(0, 3, (2, 8, 8, 6)))  # channel-less labels too


def test_valid_padding_heads_are_refused_instead_of_getting_a_misaligned_target():
    model = build_model(
        "unet", 2, 1, 2, depth=2, features=4, padding="valid", deep_supervision=True
    ).train()
    outputs = model(torch.randn(1, 1, 60, 60))
    assert [tuple(o.shape[2:]) for o in outputs] == [(20, 20), (12, 12)]
    loss = DeepSupervisionLoss(build_loss("dice_ce"))
    with pytest.raises(ShapeError, match="does not match the full-resolution output"):
        loss(outputs, torch.randint(0, 2, (1, 1, 60, 60)))  # the input-sized label
    with pytest.raises(ShapeError, match=r"outputs\[1\] has spatial size \(12, 12\)"):
        loss(outputs, torch.randint(0, 2, (1, 1, 20, 20)))
    # each head with its own target, as docs/losses.md describes, works with the plain loss
    label = torch.randint(0, 2, (1, 1, 60, 60))
    head_1 = resize_target(label[:, :, 18:42, 18:42], (12, 12), 2)  # centre 24 = 12 * 2**1
    assert loss.loss(outputs[1], head_1).isfinite()
