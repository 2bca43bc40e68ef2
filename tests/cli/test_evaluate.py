"""``medseg3d evaluate`` as a subprocess on hand-made masks with known Dice, IoU and HD95."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from medseg3d.cli.main import main
from medseg3d.io import save_volume
from medseg3d.io.volume import Volume

SPACING = (2.0, 1.0, 1.0)
AFFINE = np.diag([*SPACING, 1.0])


def cube(shift=0, value=1, shape=(20, 20, 20)):
    labels = np.zeros(shape, dtype=np.uint8)
    labels[5 + shift : 15 + shift, 5:15, 5:15] = value
    return labels


def write(path, array, affine=AFFINE):
    return save_volume(Volume(array, affine), path, is_label=True)


@pytest.fixture
def medseg(capsys):
    """The command line in this process (the subprocess tests cover the process boundary),
    returning what ``subprocess.run`` would: returncode, stdout, stderr."""

    def run(*args):
        code = main([str(arg) for arg in args])
        captured = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)

    return run


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_known_dice_iou_hd95_for_a_shifted_cube(cli, tmp_path):
    gt = write(tmp_path / "case.nii.gz", cube())
    pred = write(tmp_path / "pred.nii.gz", cube(shift=2))
    result = cli(
        "evaluate",
        "--pred",
        pred,
        "--gt",
        gt,
        "-o",
        tmp_path / "r.csv",
        "--json",
        tmp_path / "s.json",
    )
    assert result.returncode == 0, result.stderr
    (row,) = read_csv(tmp_path / "r.csv")
    assert row["case"] == "case" and row["label"] == "label_1"
    assert float(row["dice"]) == pytest.approx(0.8)  # 2 * 800 / (1000 + 1000)
    assert float(row["iou"]) == pytest.approx(800 / 1200)
    # the leading face is 2 voxels (x spacing 2 mm) from the reference: HD (and HD95) = 4 mm
    assert float(row["hd95_mm"]) == pytest.approx(4.0)
    assert float(row["volume_gt_ml"]) == pytest.approx(1000 * 2.0 / 1000)
    summary = json.loads((tmp_path / "s.json").read_text())["summary"]
    assert summary["labels"]["label_1"]["dice"]["mean"] == pytest.approx(0.8)
    assert "summary over 1 case" in result.stdout


def test_hd95_and_asd_agree_with_monai(medseg, tmp_path):
    monai_metrics = pytest.importorskip("monai.metrics")
    import torch

    rng = np.random.default_rng(0)
    gt = np.zeros((24, 20, 16), dtype=np.uint8)
    gt[4:18, 3:15, 2:12] = 1
    pred = gt.copy()
    pred[rng.random(gt.shape) < 0.05] ^= 1  # scattered errors, some far from the surface
    write(tmp_path / "gt.nii.gz", gt)
    write(tmp_path / "pred.nii.gz", pred)
    result = medseg(
        "evaluate",
        "--pred",
        tmp_path / "pred.nii.gz",
        "--gt",
        tmp_path / "gt.nii.gz",
        "-o",
        tmp_path / "r.csv",
    )
    assert result.returncode == 0, result.stderr
    (row,) = read_csv(tmp_path / "r.csv")
    y_pred = torch.from_numpy(pred)[None, None].float()
    y = torch.from_numpy(gt)[None, None].float()
    hd95 = monai_metrics.compute_hausdorff_distance(y_pred, y, percentile=95, spacing=list(SPACING))
    asd = monai_metrics.compute_average_surface_distance(
        y_pred, y, symmetric=True, spacing=list(SPACING)
    )
    assert float(row["hd95_mm"]) == pytest.approx(float(hd95), rel=1e-4)
    assert float(row["asd_mm"]) == pytest.approx(float(asd), rel=1e-4)


def test_folders_are_matched_by_case_name(medseg, tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    two = cube(value=1) + cube(shift=0, value=1, shape=(20, 20, 20)) * 0
    two[1:3, 1:3, 1:3] = 2
    write(tmp_path / "gt" / "liver_001.nii.gz", two)
    write(tmp_path / "gt" / "liver_002.nii.gz", cube())
    write(tmp_path / "pred" / "liver_001_seg.nii.gz", two)  # `medseg3d predict -o folder` names
    write(tmp_path / "pred" / "liver_002_0000_seg.nii.gz", cube(shift=2))  # nnU-Net channel suffix
    write(tmp_path / "pred" / "liver_003_seg.nii.gz", cube())  # no reference: ignored
    (tmp_path / "gt" / "notes.txt").write_text("not a label map")
    result = medseg(
        "evaluate",
        "--pred",
        tmp_path / "pred",
        "--gt",
        tmp_path / "gt",
        "--labels",
        "liver=1,tumour=2",
        "-o",
        tmp_path / "report.csv",
    )
    assert result.returncode == 0, result.stderr
    rows = read_csv(tmp_path / "report.csv")
    assert [(r["case"], r["label"]) for r in rows] == [
        ("liver_001", "liver"),
        ("liver_001", "tumour"),
        ("liver_002", "liver"),
        ("liver_002", "tumour"),
    ]
    assert float(rows[0]["dice"]) == 1.0 and float(rows[2]["dice"]) == pytest.approx(0.8)
    # tumour absent from both masks of liver_002: Dice 1, distances 0 (see docs/metrics.md)
    assert float(rows[3]["dice"]) == 1.0
    assert rows[0]["prediction"].endswith("liver_001_seg.nii.gz")
    assert (
        "liver" in result.stdout and "tumour" in result.stdout and "0.900" in result.stdout
    )  # mean Dice


def test_label_names_from_dataset_json(medseg, tmp_path):
    (tmp_path / "labelsTr").mkdir()
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "spleen": 1}}))
    write(tmp_path / "labelsTr" / "s_01.nii.gz", cube())
    write(tmp_path / "p.nii.gz", cube())
    (tmp_path / "preds").mkdir()
    write(tmp_path / "preds" / "s_01.nii.gz", cube())
    result = medseg(
        "evaluate",
        "--pred",
        tmp_path / "preds",
        "--gt",
        tmp_path / "labelsTr",
        "-o",
        tmp_path / "r.csv",
    )
    assert result.returncode == 0, result.stderr
    assert read_csv(tmp_path / "r.csv")[0]["label"] == "spleen"


def test_geometry_mismatch_is_an_error_not_a_resampling(cli, medseg, tmp_path):
    gt = write(tmp_path / "gt.nii.gz", cube())
    shifted = AFFINE.copy()
    shifted[0, 3] = 1.0  # moved by 1 mm
    pred = write(tmp_path / "pred.nii.gz", cube(), affine=shifted)
    result = cli("evaluate", "--pred", pred, "--gt", gt)
    assert result.returncode != 0
    assert "different grids" in result.stderr and "Traceback" not in result.stderr
    small = write(tmp_path / "small.nii.gz", cube(shape=(20, 20, 19)))
    result = medseg("evaluate", "--pred", small, "--gt", gt)
    assert result.returncode != 0 and "shape" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_case_in_a_folder_is_reported_and_the_rest_evaluated(medseg, tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    for case in ("a", "b"):
        write(tmp_path / "gt" / f"{case}.nii.gz", cube())
    write(tmp_path / "pred" / "a.nii.gz", cube())
    write(tmp_path / "pred" / "b.nii.gz", cube(shape=(20, 20, 21)))
    result = medseg(
        "evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt", "-o", tmp_path / "r.csv"
    )
    assert result.returncode == 1
    assert "b:" in result.stderr and "1 of 2 case(s) could not be evaluated" in result.stderr
    assert [row["case"] for row in read_csv(tmp_path / "r.csv")] == ["a"]


def test_missing_predictions_and_paths(medseg, tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    write(tmp_path / "gt" / "a.nii.gz", cube())
    result = medseg("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert (
        result.returncode != 0
        and "no prediction" in result.stderr
        and "Traceback" not in result.stderr
    )
    result = medseg(
        "evaluate", "--pred", tmp_path / "nowhere.nii.gz", "--gt", tmp_path / "gt" / "a.nii.gz"
    )
    assert result.returncode != 0 and "does not exist" in result.stderr
    result = medseg("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt" / "a.nii.gz")
    assert result.returncode != 0 and "both be files or both be folders" in result.stderr


def test_a_numbered_reference_without_prediction_never_takes_another_case(medseg, tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    write(tmp_path / "gt" / "case_0001.nii.gz", cube())
    write(tmp_path / "gt" / "case_0002.nii.gz", cube(shift=3))
    write(tmp_path / "gt" / "liver_007_gt.nii.gz", cube())
    write(tmp_path / "pred" / "case_0001_seg.nii.gz", cube())
    write(tmp_path / "pred" / "liver_007_seg.nii.gz", cube())
    result = medseg("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "1 reference case(s) have no prediction" in result.stderr and "case_0002" in result.stderr
    (tmp_path / "gt" / "case_0002.nii.gz").unlink()
    result = medseg("evaluate", "--pred", tmp_path / "pred", "--gt", tmp_path / "gt")
    assert result.returncode == 0, result.stderr  # liver_007_gt is paired with liver_007_seg
