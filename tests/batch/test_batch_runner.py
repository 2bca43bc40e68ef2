"""The local backend in-process: same masks as `predict`, skip/resume, failure isolation."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch

from medseg3d.batch import EXIT_CASES_FAILED, BatchReport, collect_cases, run_batch, run_local
from medseg3d.batch.api import folder_lock, report_name
from medseg3d.batch.engine import CaseEngine
from medseg3d.batch.report import read_report
from medseg3d.errors import OutputError
from medseg3d.inference.predictor import Predictor
from medseg3d.io import Volume, load_volume, write_dicom_series
from tests.batch.batch_helpers import (
    CRASH_CASE,
    LABELS,
    affine,
    case_id,
    crashing_preparer,
    image,
    make_case_folder,
    make_model_folder,
    truncate,
    write_case,
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("model") / "model")


def test_batch_gives_the_masks_of_predict_isolates_a_corrupt_case_and_resumes(tmp_path, model_dir):
    cases = make_case_folder(tmp_path / "cases")
    out = tmp_path / "out"
    summary = run_batch(cases, out, model_dir, device="cpu", workers=2)
    assert summary.counts == {"done": 4, "skipped": 0, "failed": 1, "total": 5, "pending": 0}
    assert summary.exit_code == EXIT_CASES_FAILED and summary.failed_cases == ["group_b_c3"]
    assert 0.0 <= summary.idle_share <= 1.0 and summary.model_seconds > 0

    predictor = Predictor(model_dir, device="cpu")
    for index in (0, 1, 2, 4):
        output = load_volume(out / f"{case_id(index)}.nii.gz")
        source = cases / f"group_{'b' if index % 2 else 'a'}" / f"c{index}.nii.gz"
        expected = predictor.predict(source)
        np.testing.assert_array_equal(output.array, expected.array)
        np.testing.assert_allclose(output.affine, affine(index), atol=1e-5)
        assert output.array.dtype == np.uint8
    report = read_report(out / "report.json")
    rows = {row.case_id: row for row in report["cases"]}
    assert rows["group_b_c3"].status == "failed"
    assert "truncated or corrupt" in rows["group_b_c3"].error
    done = rows["group_a_c0"]
    assert done.shape == (20, 16, 12) and done.spacing == pytest.approx((1.2, 1.0, 2.5))
    labels = np.asarray(nib.load(str(out / "group_a_c0.nii.gz")).dataobj)
    assert done.volumes_ml["organ"] == pytest.approx(labels.sum() * 1.2 * 1.0 * 2.5 / 1000)
    assert report["finished"] and report["device"].startswith("cpu")
    mtimes = {path.name: path.stat().st_mtime_ns for path in out.glob("*.nii.gz")}

    again = run_batch(cases, out, model_dir, device="cpu")
    assert again.counts["skipped"] == 4 and again.counts["failed"] == 1
    assert again.counts["done"] == 0 and again.exit_code == EXIT_CASES_FAILED
    rows = {row.case_id: row for row in read_report(out / "report.json")["cases"]}
    assert rows["group_a_c0"].status == "skipped"
    assert rows["group_a_c0"].volumes_ml == pytest.approx(done.volumes_ml)
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")} == mtimes

    forced = run_batch(cases, out, model_dir, device="cpu", overwrite=True)
    assert forced.counts["done"] == 4
    assert all(out.joinpath(name).stat().st_mtime_ns != t for name, t in mtimes.items())


def test_an_invalid_existing_output_is_recomputed(tmp_path, model_dir):
    cases = tmp_path / "cases"
    write_case(cases / "a.nii.gz", 0)
    write_case(cases / "b.nii.gz", 1)
    out = tmp_path / "out"
    run_batch(cases, out, model_dir, device="cpu")
    good = np.asarray(nib.load(str(out / "a.nii.gz")).dataobj)
    truncate(out / "a.nii.gz")  # e.g. a copy gone wrong
    summary = run_batch(cases, out, model_dir, device="cpu")
    assert summary.counts["done"] == 1 and summary.counts["skipped"] == 1
    np.testing.assert_array_equal(np.asarray(nib.load(str(out / "a.nii.gz")).dataobj), good)


def test_out_of_memory_fails_only_that_case(tmp_path, model_dir, monkeypatch):
    cases = make_case_folder(tmp_path / "cases", count=3, corrupt=())
    original = CaseEngine.infer

    def infer(self, prepared):
        if prepared.case.case_id == case_id(1):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80.00 GiB")
        return original(self, prepared)

    monkeypatch.setattr(CaseEngine, "infer", infer)
    summary = run_batch(cases, tmp_path / "out", model_dir, device="cpu", workers=1)
    assert summary.counts["done"] == 2 and summary.failed_cases == [case_id(1)]
    rows = {r.case_id: r for r in read_report(tmp_path / "out" / "report.json")["cases"]}
    assert "out of memory" in rows[case_id(1)].error.lower()


def test_dicom_wrong_modality_fails_and_no_patient_identifier_reaches_the_report(
    tmp_path, model_dir
):
    cases = tmp_path / "cases"
    for name, modality in (("ct_study", "CT"), ("mr_study", "MR")):
        write_dicom_series(
            Volume(image(0, (20, 16, 6)), affine(0)),
            cases / name,
            modality=modality,
            patient_name="Doe^Jane",
            patient_id="PID-12345",
        )
    out = tmp_path / "out"
    summary = run_batch(cases, out, model_dir, device="cpu")
    rows = {r.case_id: r for r in read_report(out / "report.json")["cases"]}
    assert rows["ct_study"].status == "done" and rows["ct_study"].shape == (20, 16, 6)
    assert rows["mr_study"].status == "failed" and "wrong modality" in rows["mr_study"].error
    assert summary.exit_code == EXIT_CASES_FAILED
    for path in (out / "report.csv", out / "report.json"):
        text = path.read_text()
        assert "Doe" not in text and "Jane" not in text and "12345" not in text
    json.loads((out / "report.json").read_text())
    assert run_batch(cases, out, model_dir, device="cpu").counts["skipped"] == 1
    assert set(LABELS) >= set(rows["ct_study"].volumes_ml)


def test_reader_processes_give_the_same_masks_and_a_crashing_reader_fails_one_case(
    tmp_path, model_dir
):
    cases = tmp_path / "cases"
    for name, seed in (("a", 0), (CRASH_CASE, 1), ("c", 2)):
        write_case(cases / f"{name}.nii.gz", seed)
    engine = CaseEngine(model_dir, device="cpu")
    engine.preparer = crashing_preparer(engine.preparer)
    collected = collect_cases(cases, channels=1)
    report = BatchReport(
        tmp_path / "out", case_ids=[c.case_id for c in collected], labels=["organ"]
    )
    summary = run_local(
        engine, collected, tmp_path / "out", report, workers=1, worker_type="process"
    )
    assert summary.counts["done"] == 2 and summary.failed_cases == [CRASH_CASE]
    rows = {r.case_id: r for r in report.results}
    assert "reader process died" in rows[CRASH_CASE].error
    predictor = Predictor(model_dir, device="cpu")
    for name in ("a", "c"):
        expected = predictor.predict(cases / f"{name}.nii.gz").array
        np.testing.assert_array_equal(
            load_volume(tmp_path / "out" / f"{name}.nii.gz").array, expected
        )


def test_a_second_batch_into_the_same_folder_is_refused_but_shards_run_side_by_side(
    tmp_path, model_dir
):
    cases = make_case_folder(tmp_path / "cases", count=2, corrupt=())
    out = tmp_path / "out"
    with folder_lock(out, report_name(None)):
        with pytest.raises(OutputError, match="another medseg3d batch .pid \\d+. is writing"):
            run_batch(cases, out, model_dir, device="cpu")
        shard = run_batch(cases, out, model_dir, device="cpu", shard=(1, 2))
    assert shard.counts["total"] == 1 and shard.report_csv.name == "report-shard1of2.csv"
    assert run_batch(cases, out, model_dir, device="cpu").counts["skipped"] == 1


def test_multi_channel_cases_from_nnunet_named_files(tmp_path):
    model = make_model_folder(tmp_path / "model2", channels=2, channel_names=("T2", "ADC"))
    cases = tmp_path / "cases"
    cases.mkdir()
    for channel in range(2):  # both channels on one grid
        nib.save(
            nib.Nifti1Image(image(channel), affine(0)), str(cases / f"p1_{channel:04d}.nii.gz")
        )
    out = tmp_path / "out"
    summary = run_batch(cases, out, model, device="cpu")
    assert summary.counts["done"] == 1 and summary.exit_code == 0
    expected = Predictor(model, device="cpu").predict(
        [cases / "p1_0000.nii.gz", cases / "p1_0001.nii.gz"]
    )
    np.testing.assert_array_equal(load_volume(out / "p1.nii.gz").array, expected.array)


def test_dicom_seg_beside_each_dicom_case_and_a_missing_one_is_recomputed(tmp_path, model_dir):
    import highdicom as hd

    cases = tmp_path / "cases"
    write_dicom_series(Volume(image(1, (20, 16, 6)), affine(1)), cases / "ct_study")
    write_case(cases / "nifti_case.nii.gz", 2)
    out = tmp_path / "out"
    options = {"dicom_seg": True}
    first = run_batch(cases, out, model_dir, device="cpu", options=options)
    assert first.counts["done"] == 2 and first.exit_code == 0
    assert sorted(p.name for p in out.glob("*.dcm")) == ["ct_study_seg.dcm"]  # DICOM cases only
    seg = hd.seg.segread(out / "ct_study_seg.dcm")
    scan = load_volume(cases / "ct_study")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == scan.meta["series_uid"]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["organ"]
    mask = np.asarray(nib.load(str(out / "ct_study.nii.gz")).dataobj)
    from tests.io.io_helpers import seg_labels

    assert np.array_equal(seg_labels(seg, scan), mask)

    again = run_batch(cases, out, model_dir, device="cpu", options=options)
    assert again.counts["skipped"] == 2
    (out / "ct_study_seg.dcm").write_bytes((out / "ct_study_seg.dcm").read_bytes()[:-100])
    rerun = run_batch(cases, out, model_dir, device="cpu", options=options)
    rows = {r.case_id: r.status for r in read_report(out / "report.json")["cases"]}
    assert rows == {"ct_study": "done", "nifti_case": "skipped"} and rerun.exit_code == 0
    assert hd.seg.segread(out / "ct_study_seg.dcm").pixel_array is not None


def test_a_series_with_a_missing_slice_fails_unless_allow_irregular(tmp_path, model_dir):
    cases = tmp_path / "cases"
    paths = write_dicom_series(Volume(image(1, (20, 16, 8)), affine(1)), cases / "gap")
    paths[3].unlink()  # a slice lost in transfer
    out = tmp_path / "out"
    strict = run_batch(cases, out, model_dir, device="cpu")
    (row,) = read_report(out / "report.json")["cases"]
    assert strict.exit_code == EXIT_CASES_FAILED and "--allow-irregular" in row.error
    options = {"allow_irregular": True}
    first = run_batch(cases, out, model_dir, device="cpu", options=options)
    (row,) = read_report(out / "report.json")["cases"]
    assert first.exit_code == 0 and row.status == "done" and row.shape == (20, 16, 8)
    again = run_batch(cases, out, model_dir, device="cpu", options=options)
    assert again.counts["skipped"] == 1  # the regular grid is not the headers' slice count


def test_overwrite_of_a_case_that_now_fails_removes_its_stale_mask(tmp_path, model_dir):
    cases = tmp_path / "cases"
    write_case(cases / "a.nii.gz", 0)
    write_case(cases / "b.nii.gz", 1)
    out = tmp_path / "out"
    assert run_batch(cases, out, model_dir, device="cpu").counts["done"] == 2
    truncate(cases / "a.nii.gz")  # the study was re-sent, and this time it is broken
    summary = run_batch(cases, out, model_dir, device="cpu", overwrite=True)
    assert (summary.counts["done"], summary.counts["failed"]) == (1, 1)
    rows = {r.case_id: r for r in read_report(out / "report.json")["cases"]}
    assert "its previous output was removed" in rows["a"].error
    assert not (out / "a.nii.gz").exists() and (out / "b.nii.gz").exists()
    again = run_batch(cases, out, model_dir, device="cpu")  # no stale mask to skip as done
    assert again.counts["failed"] == 1 and again.exit_code == EXIT_CASES_FAILED


def test_a_manifest_case_with_several_series_names_the_series_uid_column(tmp_path, model_dir):
    study = tmp_path / "study"
    for number in (1, 2):
        write_dicom_series(
            Volume(image(number, (20, 16, 6)), affine(0)),
            study / f"s{number}",
            series_number=number,
        )
    manifest = tmp_path / "cases.csv"
    manifest.write_text(f"case_id,input\nstudy,{study}\n", encoding="utf-8")
    out = tmp_path / "out"
    summary = run_batch(manifest, out, model_dir, device="cpu")
    (row,) = read_report(out / "report.json")["cases"]
    assert summary.exit_code == EXIT_CASES_FAILED and row.status == "failed"
    assert "2 DICOM series found" in row.error and "series_uid column" in row.error
