"""MONAI ``BasicUNet`` <-> medseg3d ``unet``: the same network, so the weights convert exactly.

Of MONAI's U-Nets, ``monai.networks.nets.BasicUNet`` is the one whose structure is our ``unet``
layer for layer: two ``conv3x3 -> norm -> act`` per level (convolutions with a bias), max-pooling,
a 2x2 transposed convolution with stride 2 up, ``cat([skip, up])``, two convolutions, a 1x1 head.
(``monai.networks.nets.UNet`` uses strided and residual units and ``DynUNet`` has no conv bias
and strided down-sampling, so neither maps onto ``unet``.)

The correspondence holds when the ``BasicUNet`` was built with ``upsample="deconv"`` (its
default) and widths ``features=(f0, f1, f2, f3, f4, f5)`` with ``f1 == f0 == f5`` and
``f_{l+1} == 2 * f_l`` for l = 1..3, i.e. MONAI's default ``(32, 32, 64, 128, 256, 32)``;
the medseg3d model is then ``build_model("unet", dims, in, out, depth=4,
features=[f0, f1, f2, f3, f4], norm=..., act=...)`` (a PReLU's slope converts too).
MONAI's ``bias=False`` (convolutions without bias) has no counterpart and is refused. Dropout
sits at another place in the block (MONAI: after the norm in both convolutions; medseg3d: before
it, in the first), so training with dropout differs while inference (eval mode) is identical.

>>> net = unet_from_basic_unet(monai_net)             # a medseg3d UNet with the same outputs
>>> state = basic_unet_state_dict_to_unet(monai_state) # or convert a state dict alone
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from medseg3d.errors import CheckpointError, ConfigError

_BASIC_UNET_DEPTH = 4
_CONV = r"conv_(?P<j>[01])\.(?P<part>conv|adn\.N|adn\.A)\.(?P<param>.+)"
_PATTERNS = (
    (re.compile(rf"^conv_0\.{_CONV}$"), "encoder.stages.0"),
    (re.compile(rf"^down_(?P<level>[1-4])\.convs\.{_CONV}$"), "encoder.stages.{level}"),
    (re.compile(rf"^upcat_(?P<level>[1-4])\.convs\.{_CONV}$"), "decoder.stages.{up}"),
)
_UP = re.compile(r"^upcat_(?P<level>[1-4])\.upsample\.deconv\.(?P<param>weight|bias)$")
_HEAD = re.compile(r"^final_conv\.(?P<param>weight|bias)$")
_OURS_CONV = re.compile(
    r"^(?P<where>encoder|decoder)\.stages\.(?P<level>\d)\.conv(?P<j>[12])\.(?P<part>conv|norm|act)\.(?P<param>.+)$"
)
_OURS_UP = re.compile(r"^decoder\.ups\.(?P<level>\d)\.up\.(?P<param>weight|bias)$")
_OURS_HEAD = re.compile(r"^decoder\.heads\.0\.(?P<param>weight|bias)$")
#: MONAI's ``Convolution`` parts and ours: the conv, its norm ``N`` and its activation ``A``
#: (which has weights only when it is a PReLU).
_PARTS = {"conv": "conv", "adn.N": "norm", "adn.A": "act"}


def basic_unet_key_to_unet(key: str) -> str:
    """The medseg3d ``unet`` parameter name of one MONAI ``BasicUNet`` state-dict key."""
    for pattern, target in _PATTERNS:
        match = pattern.match(key)
        if match:
            level = int(match.groupdict().get("level") or 0)
            prefix = target.format(level=level, up=level - 1)
            part = _PARTS[match["part"]]
            return f"{prefix}.conv{int(match['j']) + 1}.{part}.{match['param']}"
    match = _UP.match(key)
    if match:
        return f"decoder.ups.{int(match['level']) - 1}.up.{match['param']}"
    match = _HEAD.match(key)
    if match:
        return f"decoder.heads.0.{match['param']}"
    raise CheckpointError(
        f"state-dict key {key!r} is not part of a MONAI BasicUNet with upsample='deconv'; "
        "only BasicUNet weights convert to medseg3d's unet"
    )


def unet_key_to_basic_unet(key: str) -> str:
    """Inverse of :func:`basic_unet_key_to_unet`."""
    match = _OURS_CONV.match(key)
    if match:
        level, j = int(match["level"]), int(match["j"]) - 1
        part = {ours: theirs for theirs, ours in _PARTS.items()}[match["part"]]
        if match["where"] == "encoder":
            prefix = "conv_0" if level == 0 else f"down_{level}.convs"
        else:
            prefix = f"upcat_{level + 1}.convs"
        return f"{prefix}.conv_{j}.{part}.{match['param']}"
    match = _OURS_UP.match(key)
    if match:
        return f"upcat_{int(match['level']) + 1}.upsample.deconv.{match['param']}"
    match = _OURS_HEAD.match(key)
    if match:
        return f"final_conv.{match['param']}"
    raise CheckpointError(
        f"state-dict key {key!r} has no MONAI BasicUNet counterpart; only a depth-4 'unet' "
        "without deep supervision or attention converts"
    )


def basic_unet_state_dict_to_unet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A MONAI ``BasicUNet`` state dict renamed for medseg3d's ``unet`` (same tensors).

    A ``module.`` prefix (DistributedDataParallel) is dropped. Load the result with
    ``model.load_state_dict(state)`` into the model :func:`basic_unet_options` describes.
    """
    state = _strip_prefix(state)
    return {basic_unet_key_to_unet(key): value for key, value in state.items()}


def unet_state_dict_to_basic_unet(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A medseg3d ``unet`` (depth 4) state dict renamed for MONAI's ``BasicUNet``."""
    state = _strip_prefix(state)
    return {unet_key_to_basic_unet(key): value for key, value in state.items()}


def basic_unet_options(network: nn.Module) -> dict[str, Any]:
    """``build_model`` arguments of the medseg3d ``unet`` equal to a MONAI ``BasicUNet``.

    Returns ``{"name", "spatial_dims", "in_channels", "out_channels", "options"}``; raises
    :class:`~medseg3d.errors.ConfigError` when the network's widths, up-sampling, normalisation
    or activation have no medseg3d equivalent.
    """
    state = network.state_dict()
    first = state["conv_0.conv_0.conv.weight"]
    spatial_dims = first.dim() - 2
    widths = [state["conv_0.conv_1.conv.weight"].shape[0]]
    widths += [state[f"down_{level}.convs.conv_1.conv.weight"].shape[0] for level in range(1, 5)]
    head = state["final_conv.weight"]
    if "conv_0.conv_0.conv.bias" not in state:
        raise ConfigError(
            "BasicUNet was built with bias=False: a BasicUNet without conv bias has no medseg3d "
            "counterpart (medseg3d's unet convolutions always have a bias)"
        )
    if not any(key.startswith("upcat_1.upsample.deconv.") for key in state):
        raise ConfigError(
            "BasicUNet was built with upsample other than 'deconv'; only upsample='deconv' "
            "corresponds to medseg3d's unet (upsample='transpose')"
        )
    top_width = state["upcat_1.convs.conv_1.conv.weight"].shape[0]
    fits = widths[1] == widths[0] == top_width and all(
        widths[level + 1] == 2 * widths[level] for level in range(1, _BASIC_UNET_DEPTH)
    )
    if not fits:
        raise ConfigError(
            f"BasicUNet features {widths + [top_width]} have no medseg3d equivalent; "
            "it needs (f, f, 2f, 4f, 8f, f), e.g. MONAI's default (32, 32, 64, 128, 256, 32)"
        )
    return {
        "name": "unet",
        "spatial_dims": spatial_dims,
        "in_channels": int(first.shape[1]),
        "out_channels": int(head.shape[0]),
        "options": {
            "depth": _BASIC_UNET_DEPTH,
            "features": [int(w) for w in widths],
            "norm": _norm_spec(network),
            "act": _act_spec(network),
            "upsample": "transpose",
            "deep_supervision": False,
        },
    }


def unet_from_basic_unet(network: nn.Module) -> nn.Module:
    """A medseg3d ``unet`` with the weights of a MONAI ``BasicUNet``: the same outputs.

    The returned model is in the mode (train/eval) of ``network``; its build arguments are in
    ``model.options`` and :func:`basic_unet_options`.
    """
    from medseg3d.nn import build_model

    spec = basic_unet_options(network)
    model = build_model(
        spec["name"],
        spec["spatial_dims"],
        spec["in_channels"],
        spec["out_channels"],
        **spec["options"],
    )
    try:
        model.load_state_dict(basic_unet_state_dict_to_unet(network.state_dict()), strict=True)
    except RuntimeError as error:  # a difference the option checks above did not catch
        detail = " ".join(str(error).split("\n", 1)[-1].split())
        raise CheckpointError(
            f"the BasicUNet's weights do not fit the medseg3d unet {spec['options']}: {detail}"
        ) from None
    return model.train(network.training)


def _norm_spec(network: nn.Module) -> Any:
    norm = network.conv_0.conv_0.adn._modules.get("N")
    if norm is None:
        return "none"
    kind = type(norm).__name__
    if kind.startswith("InstanceNorm"):
        if not norm.affine:
            return ["instance", {"affine": False}]
        return "instance"
    if kind.startswith("BatchNorm"):
        return ["batch", {"momentum": norm.momentum, "eps": norm.eps}]
    if kind == "GroupNorm":
        return ["group", {"num_groups": norm.num_groups}]
    raise ConfigError(f"BasicUNet normalisation {kind} has no medseg3d equivalent")


def _act_spec(network: nn.Module) -> Any:
    act = network.conv_0.conv_0.adn._modules.get("A")
    kind = type(act).__name__
    if kind == "LeakyReLU":
        return ["leaky_relu", {"negative_slope": float(act.negative_slope)}]
    if kind == "PReLU" and act.num_parameters != 1:
        raise ConfigError(
            f"BasicUNet PReLU with num_parameters={act.num_parameters} has no medseg3d "
            "equivalent; only the single-slope PReLU (act='prelu') converts"
        )
    if kind in ("ReLU", "PReLU", "GELU", "ELU", "SiLU"):
        return kind.lower() if kind != "SiLU" else "silu"
    raise ConfigError(f"BasicUNet activation {kind} has no medseg3d equivalent")


def _strip_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = dict(state)
    for prefix in ("module.", "_orig_mod."):
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state
