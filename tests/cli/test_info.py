"""``medseg3d info`` as a real subprocess: the report, and one line for every bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))

from io_helpers import pydicom_test_files  # noqa: E402
from test_bad_inputs import make_bad_inputs  # noqa: E402

BAD = [
    "missing path",
    "truncated nii.gz",
    "text named nii.gz",
    "empty folder",
    "folder without DICOM",
    "several series",
    "missing slices",
    "NaN and Inf voxels",
    "truncated DICOM",
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return make_bad_inputs(tmp_path_factory.mktemp("bad_cli"), pydicom_test_files())


def test_info_reports_a_dicom_file(cli):
    path = pydicom_test_files() / "CT_small.dcm"
    result = cli("info", path)
    assert result.returncode == 0, result.stderr
    for words in [
        "128 x 128 x 1 (int16)",
        "0.6615 x 0.6615 x 5 mm",
        "LPS",
        "-896 .. 1167",
        "CT",
        "1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322",
    ]:
        assert words in result.stdout


def test_info_json_and_series_choice(cli):
    folder = pydicom_test_files() / "dicomdirtests" / "98892001"
    result = cli("info", "--json", "--series", "5", folder)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert (
        facts["shape"] == [16, 16, 5]
        and facts["modality"] == "CT"
        and facts["orientation"] == "LPS"
    )
    assert facts["series_description"] == "SmartScore - Gated 0.5 sec"


def test_info_lists_several_series_and_exits_non_zero(cli):
    folder = pydicom_test_files() / "dicomdirtests" / "98892001"
    result = cli("info", folder)
    assert result.returncode != 0
    assert (
        "2 DICOM series" in result.stdout
        and "Scout" in result.stdout
        and "SmartScore" in result.stdout
    )
    assert result.stderr.count("\n") == 1 and "--series" in result.stderr


@pytest.mark.parametrize("name", ["truncated nii.gz", "missing slices"])
def test_info_bad_input_one_line_no_traceback(cli, bad_inputs, name):
    path, _, words = bad_inputs[name]
    result = cli("info", path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medseg3d: error: ")
    assert str(path) in lines[0] and words in lines[0]


def test_info_every_bad_input_in_one_run(cli, bad_inputs):
    """One subprocess, many paths: each bad one gets its own one-line error, the good one a report."""
    good = bad_inputs["missing path"][0].parent / "good.nii.gz"
    paths = [bad_inputs[name][0] for name in BAD]
    result = cli("info", good, *paths)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "20 x 20 x 10" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("medseg3d: error: ")]
    assert len(errors) == len(BAD) == len(result.stderr.strip().splitlines())
    for name, line in zip(BAD, errors):
        path, _, words = bad_inputs[name]
        assert str(path) in line and words in line, (name, line)


def test_info_tells_two_grids_apart_by_their_affine(cli, tmp_path):
    import nibabel as nib
    import numpy as np

    angle = np.radians(8)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    straight = np.diag([0.8, 0.8, 2.5, 1.0])
    turned = straight.copy()
    turned[:3, :3] = rotation @ straight[:3, :3]
    data = np.zeros((6, 5, 4), np.int16)
    nib.save(nib.Nifti1Image(data, straight), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti1Image(data, turned), tmp_path / "b.nii.gz")
    result = cli("info", "--json", tmp_path / "a.nii.gz", tmp_path / "b.nii.gz")
    a, b = (json.loads(line) for line in result.stdout.splitlines())
    assert a["orientation"] == b["orientation"] and a["spacing_mm"] == b["spacing_mm"]
    np.testing.assert_allclose(b["affine"], turned, atol=1e-5)
    assert a["obliquity_deg"] == 0 and b["obliquity_deg"] == pytest.approx(8, abs=1e-3)
    text = cli("info", tmp_path / "b.nii.gz").stdout
    assert "oblique by 8 deg" in text and "affine" in text


def test_a_gdcm_fallback_decode_prints_no_traceback(cli):
    path = pydicom_test_files() / "JPGExtended.dcm"  # 12-bit JPEG: pydicom fails, GDCM decodes
    result = cli("info", path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "ERROR" not in result.stderr
    assert "256 x 1024 x 1" in result.stdout
