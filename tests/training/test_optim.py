from __future__ import annotations

import pytest
import torch

from medseg3d.training.config import default_config
from medseg3d.training.optim import build_optimizer, build_scheduler, lr_factor, parameter_groups


def test_poly_and_cosine_schedules_with_warmup():
    assert lr_factor(0, 100, name="poly", warmup=10) == pytest.approx(0.1)
    assert lr_factor(9, 100, name="poly", warmup=10) == pytest.approx(1.0)
    assert lr_factor(10, 100, name="poly", warmup=10) == pytest.approx(1.0)
    assert lr_factor(100, 100, name="poly") == pytest.approx(0.0)
    assert lr_factor(50, 100, name="poly", exponent=1.0) == pytest.approx(0.5)
    assert lr_factor(50, 100, name="cosine") == pytest.approx(0.5)
    assert lr_factor(37, 100, name="constant") == 1.0


def test_norm_and_bias_parameters_get_no_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GroupNorm(2, 4))
    decay, no_decay = parameter_groups(model, 0.1)
    assert len(decay["params"]) == 1 and decay["weight_decay"] == 0.1
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


@pytest.mark.parametrize("name", ["adamw", "sgd"])
def test_optimizer_and_scheduler_from_config(name):
    config = default_config()
    config["optimizer"]["name"] = name
    config["training"]["iterations"] = 10
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    lrs = []
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs == sorted(lrs, reverse=True) and lrs[-1] == pytest.approx(0.0)
    if name == "sgd":
        assert optimizer.param_groups[0]["nesterov"] is True
