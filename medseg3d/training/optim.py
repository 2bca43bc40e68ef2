"""Optimizers and learning-rate schedules (poly or cosine, with linear warm-up)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from medseg3d.errors import ConfigError
from medseg3d.nn.layers import NORM_TYPES


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation parameters."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, parameter in module.named_parameters(recurse=False):
            if not parameter.requires_grad:
                continue
            if isinstance(module, NORM_TYPES) or name == "bias":
                no_decay.append(parameter)
            else:
                decay.append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    """AdamW or SGD with Nesterov momentum from the ``optimizer`` config section."""
    options = config["optimizer"]
    groups = parameter_groups(model, options["weight_decay"])
    if options["name"] == "adamw":
        return torch.optim.AdamW(groups, lr=options["lr"])
    if options["name"] == "sgd":
        return torch.optim.SGD(groups, lr=options["lr"], momentum=options["momentum"], nesterov=True)
    raise ConfigError(f"optimizer.name={options['name']!r}; choose one of: adamw, sgd")


def lr_factor(iteration: int, total: int, *, name: str, warmup: int = 0, exponent: float = 0.9) -> float:
    """Multiplier of the peak learning rate at ``iteration`` (0-based) of ``total``."""
    if warmup and iteration < warmup:
        return (iteration + 1) / warmup
    progress = min(1.0, (iteration - warmup) / max(1, total - warmup))
    if name == "poly":
        return (1.0 - progress) ** exponent
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if name == "constant":
        return 1.0
    raise ConfigError(f"scheduler.name={name!r}; choose one of: constant, cosine, poly")


def build_scheduler(optimizer: torch.optim.Optimizer, config: dict[str, Any]) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = config["scheduler"]
    total = config["training"]["iterations"]
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda iteration: lr_factor(
            iteration,
            total,
            name=schedule["name"],
            warmup=schedule["warmup_iterations"],
            exponent=schedule["poly_exponent"],
        ),
    )
