"""MONAI BasicUNet weights in medseg3d's unet and back: the same outputs (to 1e-5)."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import BasicUNet

from medseg3d.errors import CheckpointError, ConfigError
from medseg3d.monai import (
    basic_unet_options,
    basic_unet_state_dict_to_unet,
    unet_from_basic_unet,
    unet_state_dict_to_basic_unet,
)
from medseg3d.nn import build_model


@pytest.mark.parametrize(
    "spatial_dims, norm, act",
    [
        (3, "instance", ("LeakyReLU", {"negative_slope": 0.1, "inplace": True})),
        (2, "batch", ("relu", {"inplace": True})),
    ],
)
def test_basic_unet_converts_to_unet_with_identical_outputs(spatial_dims, norm, act):
    torch.manual_seed(0)
    monai_net = BasicUNet(spatial_dims, 2, 3, features=(4, 4, 8, 16, 32, 4), norm=norm, act=act)
    # Weights and batch-norm statistics away from their defaults, so that any mix-up shows.
    with torch.no_grad():
        for tensor in [*monai_net.parameters(), *monai_net.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(0.1 * torch.rand_like(tensor))
    monai_net.eval()
    ours = unet_from_basic_unet(monai_net)
    assert not ours.training and ours.depth == 4 and ours.features == [4, 4, 8, 16, 32]
    x = torch.randn(1, 2, *[32] * spatial_dims)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), monai_net(x), atol=1e-5, rtol=1e-5)


def test_state_dict_round_trip_and_ddp_prefix():
    monai_net = BasicUNet(3, 1, 2, features=(4, 4, 8, 16, 32, 4)).eval()
    spec = basic_unet_options(monai_net)
    ours = build_model(spec["name"], 3, 1, 2, **spec["options"]).eval()
    wrapped = {f"module.{k}": v for k, v in monai_net.state_dict().items()}
    ours.load_state_dict(basic_unet_state_dict_to_unet(wrapped), strict=True)
    back = BasicUNet(3, 1, 2, features=(4, 4, 8, 16, 32, 4)).eval()
    back.load_state_dict(unet_state_dict_to_basic_unet(ours.state_dict()), strict=True)
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), monai_net(x), atol=1e-6, rtol=1e-6)


def test_architectures_that_do_not_correspond_are_refused():
    with pytest.raises(ConfigError, match="no medseg3d equivalent"):
        unet_from_basic_unet(BasicUNet(3, 1, 2, features=(4, 8, 16, 32, 64, 4)))
    with pytest.raises(ConfigError, match="deconv"):
        unet_from_basic_unet(
            BasicUNet(3, 1, 2, features=(4, 4, 8, 16, 32, 4), upsample="nontrainable")
        )
    with pytest.raises(CheckpointError, match="BasicUNet"):
        basic_unet_state_dict_to_unet({"model.0.conv.weight": torch.zeros(1)})
    attention = build_model("attention_unet", 3, 1, 2, features=4, depth=4)
    with pytest.raises(CheckpointError, match="no MONAI BasicUNet counterpart"):
        unet_state_dict_to_basic_unet(attention.state_dict())


def test_prelu_slopes_convert_both_ways():
    torch.manual_seed(0)
    monai_net = BasicUNet(3, 1, 2, features=(4, 4, 8, 16, 32, 4), act="prelu")
    with torch.no_grad():
        for name, tensor in monai_net.named_parameters():
            if name.endswith("adn.A.weight"):
                tensor.uniform_(-0.5, 0.5)  # slopes away from PReLU's 0.25 default
    monai_net.eval()
    ours = unet_from_basic_unet(monai_net)
    assert ours.options["act"] == "prelu"
    x = torch.randn(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), monai_net(x), atol=1e-5, rtol=1e-5)
    back = BasicUNet(3, 1, 2, features=(4, 4, 8, 16, 32, 4), act="prelu").eval()
    back.load_state_dict(unet_state_dict_to_basic_unet(ours.state_dict()), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(back(x), monai_net(x), atol=1e-6, rtol=1e-6)


def test_a_basic_unet_without_conv_bias_is_refused_up_front():
    monai_net = BasicUNet(3, 1, 2, features=(4, 4, 8, 16, 32, 4), bias=False)
    with pytest.raises(
        ConfigError, match="BasicUNet without conv bias has no medseg3d counterpart"
    ):
        unet_from_basic_unet(monai_net)
    with pytest.raises(ConfigError, match="bias=False"):
        basic_unet_options(monai_net)
