"""The config schema: defaults, YAML files, --set overrides, and refusals naming the key."""

from __future__ import annotations

import pytest
import yaml

from medseg3d.errors import ConfigError, UnreadableFileError
from medseg3d.training import config as cfg


def test_defaults_are_valid_and_complete():
    config = cfg.build_config()
    assert config["model"]["name"] == "unet"
    assert config["loss"]["name"] == "dice_ce"
    assert config["optimizer"]["name"] == "adamw"
    assert set(config) == set(cfg.SECTIONS)


def test_files_then_values_then_set_in_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "residual_unet", "features": 8}, "optimizer": {"lr": 0.1}}))
    config = cfg.build_config(
        [path],
        ["optimizer.lr=3e-4", "data.patch_size=[32, 32, 16]", "augmentation.enabled=false"],
        {"model.features": 16, "training.iterations": None},
    )
    assert config["model"]["name"] == "residual_unet"
    assert config["model"]["features"] == 16  # command-line value beats the file
    assert config["optimizer"]["lr"] == pytest.approx(3e-4)  # --set beats everything
    assert config["data"]["patch_size"] == [32, 32, 16]
    assert config["augmentation"]["enabled"] is False
    assert config["training"]["iterations"] == 1000  # None means "not given"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.name=adam", "optimizer.name='adam' is not allowed; choose one of: adamw, sgd"),
        ("model.name=vnet", "model.name='vnet' is not allowed; choose one of:"),
        ("loss.name=hinge", "loss.name='hinge' is not allowed"),
        ("data.batch_size=0", "data.batch_size=0 must be > 0"),
        ("data.batch_size=two", "data.batch_size='two' must be an integer"),
        ("data.patch_size=[32, 0]", "must be a positive integer or a list"),
        ("training.device=gpu", "must be auto, cpu, cuda or cuda:N"),
        ("training.amp=yes", "training.amp"),
        ("model.featurez=8", "unknown key 'model.featurez'"),
        ("nosuch.key=1", "unknown key 'nosuch.key'"),
    ],
)
def test_invalid_values_are_refused_with_key_and_allowed_values(override, message):
    with pytest.raises(ConfigError) as error:
        cfg.build_config(overrides=[override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_every_problem_is_listed_at_once():
    config = cfg.default_config()
    config["data"]["batch_size"] = -1
    config["optimizer"]["lr"] = 0
    with pytest.raises(ConfigError) as error:
        cfg.validate_config(config)
    assert "data.batch_size" in str(error.value) and "optimizer.lr" in str(error.value)


def test_bad_yaml_file_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(UnreadableFileError, match="broken.yaml"):
        cfg.build_config([path])
    path.write_text("- a\n- list\n")
    with pytest.raises(ConfigError, match="mapping"):
        cfg.build_config([path])


def test_yaml_cannot_construct_python_objects(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("model: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(UnreadableFileError):
        cfg.build_config([path])
    assert not (tmp_path / "pwned").exists()


def test_reference_table_lists_every_key():
    table = cfg.describe()
    for option in cfg.SCHEMA:
        assert f"`{option.key}`" in table


def test_shipped_configs_are_valid_and_cover_every_model():
    from medseg3d.nn import MODELS

    configs = cfg.REPO_CONFIGS if hasattr(cfg, "REPO_CONFIGS") else None
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "configs"
    names = {path.stem for path in folder.glob("*.yaml")}
    assert set(MODELS.names()) <= names, set(MODELS.names()) - names
    for path in folder.glob("*.yaml"):
        cfg.build_config([path])
    assert configs is None or configs
