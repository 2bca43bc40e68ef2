"""Input-size arithmetic and the model registry's option checks."""

from __future__ import annotations

import pytest
import torch

from medseg3d.errors import ConfigError, MedsegError, ShapeError
from medseg3d.nn import (
    COMMON_OPTIONS,
    MODELS,
    build_model,
    model_options,
    nearest_valid_sizes,
    valid_input_size,
    valid_output_size,
)


def test_same_padding_sizes_are_multiples_of_two_to_the_depth():
    assert nearest_valid_sizes(100, 4, "same") == [96, 112]
    assert nearest_valid_sizes(96, 4, "same") == [96]
    assert nearest_valid_sizes(5, 4, "same") == [16]
    assert valid_output_size((96, 80), 4, padding="same") == (96, 80)
    with pytest.raises(
        ShapeError, match=r"size 33 along spatial axis 1 .* nearest valid sizes: 32 or 48"
    ):
        valid_output_size((32, 33), 4, padding="same")


def test_valid_padding_sizes_of_the_2015_unet():
    assert valid_output_size(572, 4) == 388
    assert nearest_valid_sizes(570, 4, "valid") == [556, 572]
    assert valid_input_size(388, 4) == 572
    assert valid_input_size(1, 4) == valid_input_size(4, 4) == 188  # smallest: output 4
    with pytest.raises(ShapeError, match="nearest valid sizes: 556 or 572"):
        valid_output_size(570, 4)


def test_errors_are_medseg_errors_with_one_line():
    model = build_model("unet", 3, 1, 2, features=2, depth=3)
    with pytest.raises(MedsegError) as info:
        model(torch.zeros(1, 1, 20, 16, 16))
    assert "\n" not in str(info.value) and "16 or 24" in str(info.value)


def test_unknown_model_and_unknown_option_name_the_allowed_ones():
    with pytest.raises(ConfigError, match="unknown model 'vnet'; choose one of: attention_unet"):
        build_model("vnet", 3, 1, 2)
    with pytest.raises(
        ConfigError,
        match=r"unknown option 'growth' for model 'dense_unet'; allowed: depth, .*growth_rate",
    ):
        build_model("dense_unet", 3, 1, 2, growth=4)
    with pytest.raises(ConfigError, match=r"unknown options 'a', 'b'"):
        build_model("unet", 3, 1, 2, a=1, b=2)
    with pytest.raises(ConfigError, match="unknown option 'prune' for model 'unet'"):
        build_model("unet", 3, 1, 2, prune=1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": 0}, "depth"),
        ({"features": 0}, "features"),
        ({"features": [4, 8]}, "depth \\+ 1 = 3"),
        ({"upsample": "bicubic-ish"}, "transpose, interp"),
        ({"padding": "reflect"}, "same, valid"),
        ({"norm": "weight"}, "unknown norm"),
        ({"act": "swish2"}, "unknown activation"),
        ({"dropout": 1.5}, "dropout"),
        ({"deep_supervision": "yes"}, "deep_supervision"),
    ],
)
def test_invalid_values_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model("unet", 2, 1, 2, **{"depth": 2, **options})


def test_spatial_dims_and_channels_are_checked():
    with pytest.raises(ConfigError, match="spatial_dims must be 2 or 3"):
        build_model("unet", 4, 1, 2)
    with pytest.raises(ConfigError, match="out_channels"):
        build_model("unet", 2, 1, 0)


def test_model_options_list_common_and_own_options():
    assert list(model_options("unet")) == list(COMMON_OPTIONS)
    assert model_options("r2unet")["t"] == 2
    assert model_options("unetpp")["prune"] is None
    assert model_options("bcdu_net")["dense_blocks"] == 3
    assert COMMON_OPTIONS["depth"] == 4 and COMMON_OPTIONS["features"] == 32
    assert len(MODELS) == 9


def test_features_as_a_list_and_default_doubling():
    model = build_model("unet", 2, 1, 2, depth=2, features=[3, 5, 7])
    assert model.features == [3, 5, 7]
    with torch.device("meta"):
        assert build_model("unet", 3, 1, 2).features == [32, 64, 128, 256, 512]


def test_build_model_records_its_options():
    model = build_model("r2unet", 2, 1, 2, depth=2, features=4, t=1)
    assert model.options["t"] == 1 and model.options["depth"] == 2 and model.name == "r2unet"


@pytest.mark.parametrize("name", ["unet", "unetpp", "bcdu_net", "dense_unet"])
def test_a_one_voxel_bottleneck_under_instance_norm_is_a_shape_error_naming_the_minimum(name):
    model = build_model(name, 2, 1, 2, depth=2, features=4)  # instance norm by default
    for mode in (model.train, model.eval):
        mode()
        with pytest.raises(
            ShapeError, match=r"bottleneck would be one voxel.* 8 \(2 \* 2\*\*depth\)"
        ):
            model(torch.zeros(2, 1, 4, 4))
    assert model(torch.zeros(2, 1, 4, 8)).shape == (2, 2, 4, 8)  # two bottleneck voxels


def test_batch_norm_refuses_a_one_voxel_bottleneck_only_for_a_training_batch_of_one():
    model = build_model("unet", 2, 1, 2, depth=2, features=4, norm="batch")
    with pytest.raises(ShapeError, match="BatchNorm2d"):
        model.train()(torch.zeros(1, 1, 4, 4))
    assert model.train()(torch.zeros(2, 1, 4, 4)).shape == (2, 2, 4, 4)
    assert model.eval()(torch.zeros(1, 1, 4, 4)).shape == (1, 2, 4, 4)
    group = build_model("unet", 2, 1, 2, depth=2, features=4, norm="group")  # 2 channels a group
    assert group(torch.zeros(1, 1, 4, 4)).shape == (1, 2, 4, 4)
    dense = build_model("dense_unet", 2, 1, 2, depth=2, features=4, norm="group")
    with pytest.raises(ShapeError, match="GroupNorm"):  # one channel a group in its bottleneck
        dense.eval()(torch.zeros(1, 1, 4, 4))


def test_suggested_sizes_are_never_below_the_instance_norm_minimum():
    assert nearest_valid_sizes(17, 4, "same") == [16, 32]
    assert nearest_valid_sizes(17, 4, "same", minimum=32) == [32]
    assert nearest_valid_sizes(16, 4, "same", minimum=32) == [32]
    assert nearest_valid_sizes(40, 4, "same", minimum=32) == [32, 48]
    model = build_model("unet", 3, 1, 2, depth=4, features=2)
    with pytest.raises(ShapeError, match="nearest valid sizes: 32\\. "):
        model(torch.zeros(1, 1, 17, 16, 16))
    with pytest.raises(ShapeError, match="at least one spatial size 32"):
        model(torch.zeros(1, 1, 16, 16, 16))
    group = build_model("unet", 3, 1, 2, depth=4, features=2, norm="group")
    with pytest.raises(ShapeError, match="nearest valid sizes: 16 or 32"):
        group(torch.zeros(1, 1, 17, 16, 16))
