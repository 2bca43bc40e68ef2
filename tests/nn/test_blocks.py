"""Blocks in 2D and 3D, checked against hand-computed references."""

from __future__ import annotations

import pytest
import torch

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.nn import layers
from medseg3d.nn.blocks import (
    AttentionGate,
    ConvNormAct,
    DenseBlock,
    DenseInceptionBlock,
    DoubleConv,
    InceptionResBlock,
    RecurrentBlock,
    RecurrentConv,
    ResidualBlock,
    RRCNNBlock,
    UpSample,
    center_crop,
    concat_skip,
)

DIMS = (2, 3)
BLOCKS = [
    DoubleConv,
    ResidualBlock,
    RecurrentBlock,
    RRCNNBlock,
    DenseBlock,
    InceptionResBlock,
    DenseInceptionBlock,
]


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.__name__)
def test_every_block_maps_in_to_out_channels_at_the_same_size(block, dims):
    module = block(dims, 3, 6, norm="batch", act="relu")
    x = torch.randn(2, 3, *([8] * dims))
    out = module(x)
    assert out.shape == (2, 6, *([8] * dims))
    out.sum().backward()
    assert all(p.grad is not None for p in module.parameters())


@pytest.mark.parametrize("dims", DIMS)
def test_valid_padding_trims_four_voxels_per_double_conv_and_residual(dims):
    x = torch.randn(1, 2, *([12] * dims))
    assert DoubleConv(dims, 2, 4, padding="valid")(x).shape[2:] == (8,) * dims
    assert ResidualBlock(dims, 2, 4, padding="valid")(x).shape[2:] == (8,) * dims
    with pytest.raises(ConfigError, match="padding='same'"):
        DenseBlock(dims, 2, 4, padding="valid")


def test_conv_norm_act_order_and_no_norm():
    block = ConvNormAct(2, 1, 2, 3, norm=None, act="relu")
    assert [type(m).__name__ for m in block] == ["Conv2d", "Identity", "Identity", "ReLU"]
    assert block.conv.bias is not None


def test_residual_block_adds_the_input_when_widths_match():
    block = ResidualBlock(2, 4, 4, norm=None, act=None)
    for p in block.conv2.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(block(x), x)  # conv path is zero, the shortcut is the identity


@pytest.mark.parametrize("dims", DIMS)
def test_recurrent_conv_unrolls_t_steps_with_shared_weights(dims):
    layer = RecurrentConv(dims, 3, t=3, norm=None, act="relu")
    f = layer.conv
    x = torch.randn(1, 3, *([6] * dims))
    expected = f(x)
    for _ in range(3):
        expected = f(x + expected)
    torch.testing.assert_close(layer(x), expected)
    assert sum(p.numel() for p in layer.parameters()) == sum(p.numel() for p in f.parameters())


def test_rrcnn_is_the_recurrent_block_plus_its_projection():
    recurrent = RecurrentBlock(2, 2, 4, t=2, norm=None)
    residual = RRCNNBlock(2, 2, 4, t=2, norm=None)
    residual.load_state_dict(recurrent.state_dict())
    x = torch.randn(1, 2, 8, 8)
    torch.testing.assert_close(residual(x), recurrent(x) + recurrent.project(x))
    with pytest.raises(ConfigError, match="t .*>= 1"):
        RecurrentBlock(2, 2, 4, t=0)


def test_dense_block_concatenates_all_previous_maps():
    block = DenseBlock(3, 4, 8, growth_rate=3, num_layers=4)
    assert [layer.conv.in_channels for layer in block.layers] == [4, 7, 10, 13]
    assert block.fuse.conv.in_channels == 4 + 4 * 3


def test_inception_paths_and_dense_inception_widths():
    block = InceptionResBlock(2, 4, 8)
    assert block.inception.out_channels == 3 * 4  # 1x1 | 3x3 | double 3x3, each out // 2 wide
    assert len(block.inception.path33) == 3
    dense = DenseInceptionBlock(2, 4, 8, num_layers=3, growth_rate=6)
    assert [layer[0].path1.conv.in_channels for layer in dense.layers] == [4, 10, 16]
    assert dense.fuse.conv.in_channels == 4 + 3 * 6


@pytest.mark.parametrize("dims", DIMS)
def test_attention_gate_with_neutral_psi_halves_the_skip(dims):
    gate = AttentionGate(dims, skip_channels=4, gate_channels=8, norm=None)
    x = torch.randn(2, 4, *([8] * dims))
    g = torch.randn(2, 8, *([4] * dims))
    alpha = gate.coefficients(x, g)
    assert alpha.shape == (2, 1, *([8] * dims))
    assert ((alpha > 0) & (alpha < 1)).all()
    torch.nn.init.zeros_(gate.psi.weight)
    torch.nn.init.zeros_(gate.psi.bias)  # sigmoid(0) = 0.5 everywhere
    torch.testing.assert_close(gate(x, g), gate.out(0.5 * x))


@pytest.mark.parametrize("dims", DIMS)
def test_interp_upsample_equals_interpolation_then_1x1_conv(dims):
    up = UpSample(dims, 4, 2, "interp")
    x = torch.randn(1, 4, *([5] * dims))
    conv = up.up[0]
    reference = conv(layers.resize(x, scale_factor=2))
    torch.testing.assert_close(up(x), reference, rtol=1e-5, atol=1e-5)
    assert UpSample(dims, 4, 2, "transpose")(x).shape == (1, 2, *([10] * dims))
    with pytest.raises(ConfigError, match="transpose, interp"):
        UpSample(dims, 4, 2, "pixelshuffle")


def test_center_crop_cuts_the_extra_voxel_at_the_end():
    x = torch.arange(7.0).reshape(1, 1, 7)
    assert center_crop(x, (4,)).flatten().tolist() == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(ShapeError):
        center_crop(x, (8,))
    skip = torch.zeros(1, 2, 6, 6)
    up = torch.ones(1, 3, 4, 4)
    fused = concat_skip(skip, up)
    assert fused.shape == (1, 5, 4, 4) and fused[:, :2].sum() == 0 and fused[:, 2:].mean() == 1
