"""The report (atomic, ordered, true while running) and the checks behind skip/resume."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np

from medseg3d.batch.cases import BatchCase
from medseg3d.batch.outputs import check_output
from medseg3d.batch.report import BatchReport, CaseResult, read_report
from medseg3d.io.atomic import TEMP_MARK, remove_own_temporaries, temporaries, temporary_path
from tests.batch.batch_helpers import affine, truncate, write_case


def test_report_lists_cases_in_batch_order_and_is_rewritten_as_cases_finish(tmp_path):
    report = BatchReport(tmp_path, case_ids=["a", "b", "c"], labels=["liver", "tumour"])
    report.add(CaseResult("c", "failed", input="c.nii.gz", error="bad\nfile " + "x" * 900))
    rows = list(csv.DictReader(report.csv_path.open()))
    assert [row["case_id"] for row in rows] == ["c"]  # a half-run batch has a true report
    report.add(
        CaseResult(
            "a",
            "done",
            input="a.nii.gz",
            output="out/a.nii.gz",
            seconds=1.23456,
            shape=(4, 5, 6),
            spacing=(0.75, 0.75, 2.5),
            volumes_ml={"liver": 1.5, "tumour": 0.0},
        )
    )
    rows = list(csv.DictReader(report.csv_path.open()))
    assert [row["case_id"] for row in rows] == ["a", "c"]
    assert rows[0]["shape"] == "4x5x6" and rows[0]["spacing"] == "0.75x0.75x2.5"
    assert rows[0]["volume_ml_liver"] == "1.5000" and rows[0]["seconds"] == "1.235"
    assert rows[1]["status"] == "failed" and "\n" not in rows[1]["error"]
    assert len(rows[1]["error"]) == 500
    document = json.loads(report.json_path.read_text())
    assert document["counts"] == {"done": 1, "skipped": 0, "failed": 1, "total": 3, "pending": 1}
    assert document["finished"] is False
    report.close(seconds=2.0)
    again = read_report(report.json_path)
    assert again["finished"] is True and again["seconds"] == 2.0
    assert again["cases"][0] == report.results[0]
    assert not list(tmp_path.glob(f"{TEMP_MARK}*"))


def save_labels(path, array, matrix):
    nib.save(nib.Nifti1Image(array, matrix), str(path))
    return path


def test_an_output_counts_only_when_complete_and_on_the_input_grid(tmp_path):
    source = write_case(tmp_path / "in.nii.gz", 2)
    case = BatchCase("in", (source,))
    labels = np.zeros((20, 16, 12), dtype=np.uint8)
    labels[2:4, 2:4, 2:4] = 1
    good = save_labels(tmp_path / "good.nii.gz", labels, affine(2))
    check = check_output(good, case)
    assert check.valid and check.labels.sum() == 8
    np.testing.assert_allclose(check.spacing, (1.2, 1.2, 2.5))
    assert check_output(tmp_path / "absent.nii.gz", case).reason == "missing"
    truncated = truncate(save_labels(tmp_path / "cut.nii.gz", labels, affine(2)))
    assert not truncated.stat().st_size == 0
    assert check_output(truncated, case).reason.startswith("unreadable")
    wrong_shape = save_labels(tmp_path / "shape.nii.gz", labels[:-1], affine(2))
    assert "shape" in check_output(wrong_shape, case).reason
    moved = save_labels(tmp_path / "moved.nii.gz", labels, affine(3))
    assert "affine" in check_output(moved, case).reason
    floats = save_labels(tmp_path / "float.nii.gz", labels.astype(np.float32), affine(2))
    assert "not a label map" in check_output(floats, case).reason


def test_only_our_own_stale_temporaries_are_removed(tmp_path):
    ours = tmp_path / "case1.nii.gz"
    theirs = tmp_path / "case10.nii.gz"  # another shard's output, its write in progress
    report = tmp_path / "report.csv"
    for destination in (ours, theirs, report):  # what a kill -9 during a write leaves
        temporary_path(destination).write_bytes(b"partial")
    leftovers = [p.name for p in temporaries(tmp_path)]
    assert len(leftovers) == 3
    assert remove_own_temporaries([ours, report]) == 2
    assert [p.name for p in temporaries(tmp_path)] == [n for n in leftovers if "case10" in n]


def test_a_stopped_batch_lists_the_cases_it_never_ran(tmp_path):
    report = BatchReport(tmp_path, case_ids=["a", "b", "c"], labels=["liver"])
    report.add(CaseResult("b", "done", input="b.nii.gz", volumes_ml={"liver": 1.0}))
    rows = list(csv.DictReader(report.csv_path.open()))
    assert [(r["case_id"], r["status"]) for r in rows] == [("b", "done")]  # while running
    report.close(interrupted=True)
    rows = list(csv.DictReader(report.csv_path.open()))
    assert [(r["case_id"], r["status"]) for r in rows] == [
        ("b", "done"),
        ("a", "not run"),
        ("c", "not run"),
    ]
    document = json.loads(report.json_path.read_text())
    assert document["not_run"] == ["a", "c"] and document["counts"]["pending"] == 2
    assert [case.case_id for case in read_report(report.json_path)["cases"]] == ["b"]
