"""The layer factory: one name and ``spatial_dims`` -> the right torch layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn import layers


@pytest.mark.parametrize(
    ("dims", "conv", "pool", "batch", "instance", "drop"),
    [
        (2, nn.Conv2d, nn.MaxPool2d, nn.BatchNorm2d, nn.InstanceNorm2d, nn.Dropout2d),
        (3, nn.Conv3d, nn.MaxPool3d, nn.BatchNorm3d, nn.InstanceNorm3d, nn.Dropout3d),
    ],
)
def test_layers_match_spatial_dims(dims, conv, pool, batch, instance, drop):
    assert isinstance(layers.conv(dims, 1, 2), conv)
    assert isinstance(layers.max_pool(dims), pool)
    assert isinstance(layers.norm("batch", dims, 4), batch)
    assert isinstance(layers.norm("instance", dims, 4), instance)
    assert layers.norm("instance", dims, 4).affine
    assert isinstance(layers.dropout(dims, 0.1, channelwise=True), drop)
    assert isinstance(layers.norm("none", dims, 4), nn.Identity)
    assert isinstance(layers.norm(None, dims, 4), nn.Identity)
    x = torch.randn(1, 1, *([6] * dims))
    assert layers.conv(dims, 1, 2, 3)(x).shape[2:] == x.shape[2:]  # same padding
    assert layers.conv(dims, 1, 2, 3, padding="valid")(x).shape[2:] == (4,) * dims
    assert layers.conv_transpose(dims, 1, 2)(x).shape[2:] == (12,) * dims


def test_group_norm_and_activation_specs():
    group = layers.norm(("group", {"num_groups": 4}), 3, 12)
    assert isinstance(group, nn.GroupNorm) and group.num_groups == 4
    assert layers.norm("group", 2, 6).num_groups == 6  # 8 does not divide 6: fewer groups
    assert isinstance(layers.act("relu"), nn.ReLU)
    assert isinstance(layers.act("prelu"), nn.PReLU)
    assert isinstance(layers.act("gelu"), nn.GELU)
    leaky = layers.act(("leaky_relu", {"negative_slope": 0.2}))
    assert isinstance(leaky, nn.LeakyReLU) and leaky.negative_slope == 0.2
    with pytest.raises(ConfigError, match="unknown norm 'weight'"):
        layers.norm("weight", 3, 4)
    with pytest.raises(ConfigError, match="unknown activation 'swish2'"):
        layers.act("swish2")
    with pytest.raises(ConfigError, match="spatial_dims"):
        layers.conv(4, 1, 1)


def test_interpolation_mode_is_decided_by_the_tensor_rank():
    assert layers.interp_mode(2) != layers.interp_mode(3)
    x = torch.arange(4.0).reshape(1, 1, 4, 1, 1).expand(1, 1, 4, 2, 2)
    up = layers.resize(x, scale_factor=2)
    assert up.shape == (1, 1, 8, 4, 4)
    torch.testing.assert_close(
        up[0, 0, :, 0, 0], torch.tensor([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
    )
