"""``medseg3d models`` (the command lives in medseg3d/cli/models.py; its tests sit with the models)."""

from __future__ import annotations

import json


def test_models_lists_every_model_with_parameter_counts(cli):
    result = cli("models", "--spatial-dims", "2", "--features", "64", "-o", "norm=null", "unet")
    assert result.returncode == 0, result.stderr
    assert "31,030,658" in result.stdout  # padding does not change the count

    result = cli("models", "--json", "--depth", "2", "--features", "4", "-o", "t=3")
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert sorted(rows) == [
        "attention_unet",
        "bcdu_net",
        "dense_unet",
        "inception_unet",
        "r2unet",
        "recurrent_unet",
        "residual_unet",
        "unet",
        "unetpp",
    ]
    assert rows["r2unet"]["own_options"] == {"t": 3}
    assert all(row["parameters"] > 0 and row["size_divisor"] == 4 for row in rows.values())


def test_models_refuses_unknown_names_and_options_in_one_line(cli):
    result = cli("models", "vnet")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "medseg3d: error: unknown model 'vnet'; choose one of: attention_unet, bcdu_net, dense_unet, "
        "inception_unet, r2unet, recurrent_unet, residual_unet, unet, unetpp"
    )
    result = cli("models", "-o", "grwoth_rate=4")
    assert (
        result.returncode != 0 and "grwoth_rate" in result.stderr and "growth_rate" in result.stderr
    )
