"""Training end to end: resume equivalence, refusals, DDP, and the CLI reaching a useful Dice."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from medseg3d.errors import ConfigError, OutputError
from medseg3d.training.checkpoint import load_checkpoint
from medseg3d.training.config import build_config
from medseg3d.training.run import train
from tests.training.conftest import LABELS, TINY, make_ellipsoid_dataset


def _config(*overrides: str) -> dict:
    return build_config(overrides=[*TINY, "data.patch_size=16", "data.batch_size=2", *overrides])


def test_resume_continues_the_same_run_exactly(ellipsoid_dataset, tmp_path):
    config = _config("training.iterations=6")
    straight = train(ellipsoid_dataset, tmp_path / "straight", config, progress=False)
    assert straight.iterations == 6

    first = train(ellipsoid_dataset, tmp_path / "split", config, progress=False, stop_after=3)
    assert first.iterations == 3 and not (tmp_path / "split" / "model").exists()
    second = train(ellipsoid_dataset, tmp_path / "split", config, progress=False, resume=True)
    assert second.iterations == 6

    a = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert a["iteration"] == b["iteration"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    losses_a = [row["loss"] for row in a["history"] if "loss" in row]
    losses_b = [row["loss"] for row in b["history"] if "loss" in row]
    assert losses_a == losses_b
    # metrics.csv (appended row by row, rewritten on resume) holds exactly the history, once
    with open(tmp_path / "split" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["iteration"]) for row in rows] == [entry["iteration"] for entry in b["history"]]
    assert [float(row["loss"]) for row in rows] == pytest.approx(losses_b)


def test_the_model_folder_is_self_contained(ellipsoid_dataset, tmp_path):
    result = train(
        ellipsoid_dataset, tmp_path / "run", _config("training.iterations=2"), progress=False
    )
    description = yaml.safe_load((result.model_dir / "model.yaml").read_text())
    assert description["labels"] == LABELS
    assert description["model"]["name"] == "unet"
    assert description["model"]["in_channels"] == 1 and description["model"]["out_channels"] == 3
    assert description["plan"]["labels"] == LABELS
    assert description["config"]["training"]["iterations"] == 2
    assert description["inference"]["patch_size"] == [16, 16, 16]
    assert (result.model_dir / "weights.pt").is_file()
    assert (result.model_dir / "training_log.csv").is_file()
    splits = json.loads((result.run_dir / "splits.json").read_text())
    assert sorted(splits["train"] + splits["val"]) == [f"case{i}" for i in range(4)]


def test_an_existing_run_is_never_overwritten_and_resume_needs_a_run(ellipsoid_dataset, tmp_path):
    config = _config("training.iterations=2")
    train(ellipsoid_dataset, tmp_path / "run", config, progress=False)
    with pytest.raises(OutputError, match="--resume"):
        train(ellipsoid_dataset, tmp_path / "run", config, progress=False)
    with pytest.raises(Exception, match="nothing to resume"):
        train(ellipsoid_dataset, tmp_path / "empty", config, progress=False, resume=True)
    changed = _config("training.iterations=2", "optimizer.lr=0.5")
    with pytest.raises(ConfigError, match="optimizer.lr"):
        train(ellipsoid_dataset, tmp_path / "run", changed, progress=False, resume=True)


def test_patch_size_must_fit_the_network(ellipsoid_dataset, tmp_path):
    with pytest.raises(ConfigError, match="multiple of 4"):
        train(ellipsoid_dataset, tmp_path / "run", _config("data.patch_size=18"), progress=False)


def test_a_bad_dataset_is_refused_with_every_problem(ellipsoid_dataset, tmp_path, cli):
    broken = tmp_path / "broken"
    shutil.copytree(ellipsoid_dataset, broken)
    (broken / "labelsTr" / "case1.nii.gz").unlink()
    from medseg3d.data import make_ellipsoid_case, write_dataset

    other = write_dataset(
        tmp_path / "other", {"case2": make_ellipsoid_case((24, 32, 32), seed=9)}, LABELS
    )
    shutil.copy(other / "labelsTr" / "case2.nii.gz", broken / "labelsTr" / "case2.nii.gz")
    result = cli("train", "--data", broken, "--out", tmp_path / "run", "--iterations", "2")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("medseg3d: error:")
    assert "case1" in message and "case2" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_invalid_config_value_is_refused_before_training(ellipsoid_dataset, tmp_path, cli):
    result = cli(
        "train",
        "--data",
        ellipsoid_dataset,
        "--out",
        tmp_path / "run",
        "--set",
        "optimizer.name=adam",
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "optimizer.name='adam' is not allowed; choose one of: adamw, sgd" in result.stderr


def test_ddp_with_two_gloo_processes(ellipsoid_dataset, tmp_path):
    run_dir = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29517",
        "-m",
        "medseg3d.cli",
        "train",
        "--data",
        str(ellipsoid_dataset),
        "--out",
        str(run_dir),
        "--iterations",
        "4",
        "--patch-size",
        "16",
        "--device",
        "cpu",
        "--no-progress",
        *[item for override in TINY for item in ("--set", override)],
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run_dir / "model" / "weights.pt").is_file()
    payload = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert payload["iteration"] == 4


@pytest.mark.slow
@pytest.mark.parametrize("adversarial", [False, True], ids=["plain", "adversarial"])
def test_cli_training_reaches_a_useful_dice(tmp_path, cli, adversarial):
    """About 40 s on 2 cores. Augmentation is off: in this toy data the class *is* the
    intensity (class k = intensity k), which brightness/contrast/gamma augmentation is designed
    to make the network ignore. (The demo trains with augmentation on CT-like data.)"""
    data = make_ellipsoid_dataset(tmp_path / "data", cases=6, shape=(48, 48, 48))
    run_dir = tmp_path / "run"
    result = cli(
        "train",
        "--data",
        data,
        "--out",
        run_dir,
        "--iterations",
        "200",
        "--patch-size",
        "32",
        "--batch-size",
        "2",
        "--workers",
        "1",
        "--no-progress",
        "--set",
        "model.features=8",
        "--set",
        "model.depth=3",
        "--set",
        "data.num_folds=3",
        "--set",
        "training.validate_every=50",
        "--set",
        "optimizer.lr=3e-3",
        "--set",
        "augmentation.enabled=false",
        *(
            ["--set", "adversarial.enabled=true", "--set", "adversarial.features=8"]
            if adversarial
            else []
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best validation Dice" in result.stdout
    best = float(result.stdout.split("best validation Dice:")[1].split()[0])
    assert best > 0.8, result.stdout


def test_resume_refuses_another_or_a_changed_dataset_and_keeps_its_split(tmp_path):
    data = make_ellipsoid_dataset(tmp_path / "data", cases=4, shape=(24, 24, 24))
    config = _config("training.iterations=4")
    train(data, tmp_path / "run", config, progress=False, stop_after=2)
    split = json.loads((tmp_path / "run" / "splits.json").read_text())
    identity = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert identity["labels"] == LABELS and identity["case_ids"] == [f"case{i}" for i in range(4)]

    other = make_ellipsoid_dataset(tmp_path / "other", cases=5, shape=(24, 24, 24))
    with pytest.raises(ConfigError, match="cases added case4"):
        train(other, tmp_path / "run", config, progress=False, resume=True)
    assert json.loads((tmp_path / "run" / "splits.json").read_text()) == split

    moved = tmp_path / "moved"
    shutil.copytree(data, moved)  # the same dataset at another path still resumes
    result = train(moved, tmp_path / "run", config, progress=False, resume=True)
    assert result.iterations == 4
    assert json.loads((tmp_path / "run" / "splits.json").read_text()) == split


def test_config_mistakes_are_refused_before_any_preprocessing(ellipsoid_dataset, tmp_path):
    cases = [
        (["data.fold=7"], "data.fold=7 (--fold) must be below data.num_folds=2"),
        (["augmentation.options={foo: 1}"], "augmentation.options has unknown option(s) foo"),
        (["data.target_spacing=[1.5, 2]"], "needs one value per spatial axis of the dataset"),
        (["data.target_spacing=[0, -1, 2]"], "positive numbers"),
        (["loss.options={lamda_dice: 1}"], "loss config (loss.*)"),
        (["model.norm=batchh"], "model config (model.*)"),
        (["data.num_folds=9"], "data.num_folds=9 is more than the dataset's 4 cases"),
    ]
    for overrides, message in cases:
        run = tmp_path / overrides[0].split("=")[0]
        with pytest.raises(ConfigError, match=re.escape(message)):
            train(
                ellipsoid_dataset, run, _config("training.iterations=2", *overrides), progress=False
            )
        assert not (run / "cache").exists(), overrides  # nothing preprocessed first


def test_amp_off_in_yaml_and_set_and_options_entries_by_key(tmp_path):
    path = tmp_path / "amp.yaml"
    path.write_text("training:\n  amp: off\nmodel:\n  options:\n    t: 2\n    keep: 1\n")
    config = build_config([path], ["training.amp=off", "model.options.t=3"])
    assert config["training"]["amp"] == "off"
    assert config["model"]["options"] == {"t": 3, "keep": 1}  # one entry changed, the rest kept


def test_metrics_seconds_continue_across_resume(ellipsoid_dataset, tmp_path):
    config = _config("training.iterations=4")
    train(ellipsoid_dataset, tmp_path / "run", config, progress=False, stop_after=2)
    train(ellipsoid_dataset, tmp_path / "run", config, progress=False, resume=True)
    with open(tmp_path / "run" / "metrics.csv", newline="") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    assert len(seconds) == 4 and seconds == sorted(seconds)  # never restarts from 0
