"""Every script in examples/ runs on the sample data, on CPU, with small settings (a real process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
DATA = REPO / "sample_data" / "ct_dataset"
TINY = ["--features", "4", "--depth", "2", "--patch-size", "32"]


def run_example(name: str, *args: str, timeout: float = 600) -> str:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("example_train")
    stdout = run_example(
        "train_decathlon.py", "--data", DATA, "--out", out, "--iterations", "2",
        "--val-cases", "1", "--device", "cpu", *TINY,
    )  # fmt: skip
    return out / "model", stdout


def test_every_example_has_a_smoke_test():
    scripts = {path.name for path in EXAMPLES.glob("*.py")}
    tested = {"train_decathlon.py", "segment_dicom.py", "batch_folder.py", "monai_pipeline.py",
              "compare_architectures.py"}  # fmt: skip
    assert scripts == tested


def test_train_decathlon(trained):
    model_dir, stdout = trained
    assert (model_dir / "model.yaml").is_file()
    assert "trained unet for 2 iterations" in stdout
    assert "ct_100.nii.gz: Dice liver" in stdout  # the held-out case was scored


def test_a_trained_model_folder_loads_into_monai_in_one_call(trained):
    """The folder `medseg3d train` wrote, as MONAI network + inferer + transforms."""
    import numpy as np

    from medseg3d.monai import load_model_folder_for_monai

    model_dir, _ = trained
    parts = load_model_folder_for_monai(model_dir, device="cpu")
    source = DATA / "imagesTs" / "ct_100.nii.gz"
    prediction = parts({"image": str(source)})["pred"]
    original = nib.load(source)
    assert tuple(prediction.shape) == (1, *original.shape)
    np.testing.assert_allclose(prediction.affine.numpy(), original.affine, atol=1e-4)
    assert set(np.unique(prediction.numpy())) <= {0, 1, 2}


def test_segment_dicom(trained, tmp_path):
    model_dir, _ = trained
    stdout = run_example(
        "segment_dicom.py", "--model", model_dir, "--dicom", REPO / "sample_data" / "dicom_oblique",
        "--out", tmp_path, "--device", "cpu",
    )  # fmt: skip
    assert "liver:" in stdout and "mL" in stdout
    mask = nib.load(tmp_path / "segmentation.nii.gz")
    assert mask.shape == (48, 48, 32)
    assert (tmp_path / "segmentation_seg.dcm").is_file() and (tmp_path / "preview.png").is_file()


def test_batch_folder(trained, tmp_path):
    model_dir, _ = trained
    stdout = run_example(
        "batch_folder.py", "--model", model_dir, "--input", DATA / "imagesTs", "--out", tmp_path,
        "--device", "cpu", "--workers", "1",
    )  # fmt: skip
    assert "first run: {'done': 1" in stdout and "'skipped': 1" in stdout
    assert (tmp_path / "ct_100.nii.gz").is_file() and (tmp_path / "report.csv").is_file()


def test_monai_pipeline():
    stdout = run_example(
        "monai_pipeline.py", "--data", DATA, "--epochs", "1", "--device", "cpu", *TINY
    )
    assert "validation mean Dice" in stdout


def test_compare_architectures(tmp_path):
    stdout = run_example(
        "compare_architectures.py", "--data", DATA, "--out", tmp_path,
        "--models", "residual_unet", "--iterations", "1", "--val-cases", "1",
        "--device", "cpu", *TINY,
    )  # fmt: skip
    lines = [line for line in stdout.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| model | parameters")
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["residual_unet"]
