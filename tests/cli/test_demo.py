"""`medseg3d demo` end to end on the sample data (a short schedule: the wiring, not the Dice)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
from PIL import Image

from tests.conftest import REPO


def test_demo_writes_mask_preview_and_metrics(cli, tmp_path):
    out = tmp_path / "demo"
    result = cli("demo", "--out", out, "--iterations", "3", "--device", "cpu", "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "mean Dice" in result.stdout and str(out) in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["labels"]) == {"liver", "kidney"}
    assert 0.0 <= metrics["mean_dice"] <= 1.0

    scan = nib.load(REPO / "sample_data" / "ct_dataset" / "imagesTs" / "ct_100.nii.gz")
    mask = nib.load(out / "ct_100_seg.nii.gz")
    assert mask.shape == scan.shape
    np.testing.assert_allclose(mask.affine, scan.affine, atol=1e-5)
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1, 2}
    with Image.open(out / "preview.png") as image:
        assert image.format == "PNG" and image.size[0] > 0

    # a second run replaces the previous demo output, never a folder it did not write
    other = tmp_path / "mine"
    other.mkdir()
    (other / "precious.txt").write_text("keep me")
    refused = cli("demo", "--out", other, "--iterations", "1", "--device", "cpu", "--no-progress")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "not a previous demo output" in refused.stderr
    assert (other / "precious.txt").read_text() == "keep me"
