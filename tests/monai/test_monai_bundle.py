"""The MONAI bundle in configs/bundle/ runs for real: ``python -m monai.bundle run`` trains a
medseg3d network with medseg3d parts and exports a model folder; inference.json applies it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "configs" / "bundle"

pytest.importorskip("fire", reason="`python -m monai.bundle` needs the fire package")
pytest.importorskip("ignite", reason="MONAI engines need pytorch-ignite")


def test_bundle_configs_are_valid_json_and_name_medseg3d_components():
    for name in ("train.json", "inference.json", "metadata.json"):
        json.loads((BUNDLE / name).read_text())
    train = (BUNDLE / "train.json").read_text()
    for target in (
        "medseg3d.nn.build_model",
        "medseg3d.losses.DiceCELoss",
        "medseg3d.monai.PlanNormalized",
        "medseg3d.inference.inferer.SlidingWindowInferer",
        "build_training_transforms",
    ):
        assert target in train


def test_bundle_trains_exports_and_infers(nifti_dataset, tmp_path):
    from monai.bundle import run

    out = tmp_path / "bundle_run"
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(BUNDLE / "train.json"),
        "--meta_file", str(BUNDLE / "metadata.json"),
        "--dataset_dir", str(nifti_dataset),
        "--output_dir", str(out),
        "--max_epochs", "1",
        "--batch_size", "1",
        "--patch_size", "[16,16,16]",
        "--features", "4",
        "--depth", "2",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "val_mean_dice" in done.stdout + done.stderr
    model_dir = out / "model"
    assert (model_dir / "model.yaml").is_file() and (model_dir / "weights.pt").is_file()
    assert (out / "best_network.pt").is_file()

    # inference.json, in-process (the same workflow `python -m monai.bundle run` executes).
    predictions = tmp_path / "predictions"
    images = nifti_dataset / "imagesTr"
    run(
        config_file=str(BUNDLE / "inference.json"),
        meta_file=str(BUNDLE / "metadata.json"),
        model_dir=str(model_dir),
        input_dir=str(images),
        output_dir=str(predictions),
    )
    for source in sorted(images.glob("*.nii.gz")):
        name = source.name.replace(".nii.gz", "_seg.nii.gz")
        written, original = nib.load(predictions / name), nib.load(source)
        assert written.shape == original.shape
        np.testing.assert_allclose(written.affine, original.affine, atol=1e-4)
        assert set(np.unique(np.asarray(written.dataobj))) <= {0, 1, 2}
