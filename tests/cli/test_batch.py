"""`medseg3d batch` as a real process: failures, resume after SIGKILL, manifests, Ray."""

from __future__ import annotations

import csv
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg3d.batch import run_batch
from medseg3d.io.atomic import TEMP_MARK
from tests.batch.batch_helpers import SHAPE, make_case_folder, make_model_folder, write_case

EXIT_CASES_FAILED = 3
CASES = 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("model") / "model")


def rows(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "report.csv", newline="") as handle:
        return {row["case_id"]: row for row in csv.DictReader(handle)}


def outputs(out: Path) -> dict[str, np.ndarray]:
    """Every output, read completely (a partial file would raise here)."""
    return {p.name: np.asarray(nib.load(str(p)).dataobj) for p in sorted(out.glob("*.nii.gz"))}


def test_a_corrupt_case_is_reported_the_others_written_and_a_rerun_skips_them(
    cli, tmp_path, model_dir
):
    cases = make_case_folder(tmp_path / "cases")
    out = tmp_path / "out"
    first = cli(
        "batch", "-i", cases, "-o", out, "-m", model_dir, "--device", "cpu", "--no-progress"
    )
    assert first.returncode == EXIT_CASES_FAILED, first.stderr
    assert "Traceback" not in first.stderr
    assert "done 4, skipped 0, failed 1 of 5" in first.stdout
    report = rows(out)
    assert [r["status"] for r in report.values()].count("done") == 4
    assert report["group_b_c3"]["status"] == "failed"
    assert "truncated or corrupt" in report["group_b_c3"]["error"]
    assert len(outputs(out)) == 4 and (out / "report.json").is_file()

    # the rerun (as a real process in the SIGKILL test below; here in-process, to save time)
    second = run_batch(cases, out, model_dir, device="cpu")
    assert second.exit_code == EXIT_CASES_FAILED
    assert (second.counts["done"], second.counts["skipped"], second.counts["failed"]) == (0, 4, 1)
    assert sorted(r["status"] for r in rows(out).values()) == ["failed"] + ["skipped"] * 4


def test_killed_with_sigkill_then_rerun_resumes_without_recomputing(tmp_path, model_dir):
    cases = tmp_path / "cases"
    for index in range(CASES):
        write_case(cases / f"k{index}.nii.gz", index)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "medseg3d.cli", "batch", "-i", str(cases), "-o", str(out)]
    command += ["-m", str(model_dir), "--device", "cpu", "--workers", "1", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "report.csv").is_file() and len(rows(out)) >= 1:
                break
            time.sleep(0.01)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the batch finished before it could be killed"
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.nii.gz")}
    assert 1 <= len(finished) < CASES
    assert len(outputs(out)) == len(finished)  # whatever exists loads completely
    assert all(row["status"] == "done" for row in rows(out).values())

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    report = rows(out)
    assert len(report) == CASES
    for name, mtime in finished.items():  # nothing that had finished was computed again
        assert report[name[: -len(".nii.gz")]]["status"] == "skipped"
        assert (out / name).stat().st_mtime_ns == mtime
    assert sum(r["status"] == "done" for r in report.values()) == CASES - len(finished)
    written = outputs(out)
    assert len(written) == CASES and all(a.shape == SHAPE for a in written.values())
    assert not list(out.glob(f"{TEMP_MARK}*"))


def test_manifest_problems_are_all_reported_before_anything_runs(cli, tmp_path, model_dir):
    write_case(tmp_path / "a.nii.gz", 0)
    manifest = tmp_path / "cases.csv"
    manifest.write_text(
        "case_id,input\np1,a.nii.gz\np1,a.nii.gz\np2,missing/b.nii.gz\n", encoding="utf-8"
    )
    out = tmp_path / "out"
    result = cli("batch", "-i", manifest, "-o", out, "-m", model_dir, "--device", "cpu")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("medseg3d: error:") and len(message.splitlines()) == 1
    assert "case id 'p1' appears 2 times" in message and "b.nii.gz does not exist" in message
    assert not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_backend_on_a_local_instance_gives_the_local_outputs(cli, tmp_path, model_dir):
    cases = make_case_folder(tmp_path / "cases")
    local, distributed = tmp_path / "local", tmp_path / "ray"
    common = ("-m", model_dir, "--device", "cpu", "--no-progress")
    run_batch(cases, local, model_dir, device="cpu")  # the reference, in-process
    result = cli(
        "batch", "-i", cases, "-o", distributed, *common, "--backend", "ray", "--workers", "2"
    )
    assert result.returncode == EXIT_CASES_FAILED, result.stderr
    local_outputs, ray_outputs = outputs(local), outputs(distributed)
    assert sorted(ray_outputs) == sorted(local_outputs) and len(ray_outputs) == 4
    for name, array in local_outputs.items():
        np.testing.assert_array_equal(ray_outputs[name], array)
    ray_rows, local_rows = rows(distributed), rows(local)
    assert {k: r["status"] for k, r in ray_rows.items()} == {
        k: r["status"] for k, r in local_rows.items()
    }
    assert ray_rows["group_a_c0"]["volume_ml_organ"] == local_rows["group_a_c0"]["volume_ml_organ"]
    assert "truncated or corrupt" in ray_rows["group_b_c3"]["error"]


def test_dry_run_lists_the_cases_of_one_shard_and_computes_nothing(tmp_path, model_dir, capsys):
    from medseg3d.cli.main import main

    cases = make_case_folder(tmp_path / "cases", count=4, corrupt=())
    out = tmp_path / "out"
    code = main(
        [
            "batch",
            "-i",
            str(cases),
            "-o",
            str(out),
            "-m",
            str(model_dir),
            "--dry-run",
            "--shard",
            "0/2",
        ]
    )
    printed = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split("\t")[0] for line in printed[:-1]] == ["group_a_c0", "group_b_c1"]
    assert printed[0].endswith("group_a_c0.nii.gz") and "2 case(s)" in printed[-1]
    assert not out.exists()


def _file_size_limit(limit: int):
    def apply() -> None:  # in the child: every write past `limit` bytes fails with EFBIG
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_full_storage_stops_the_batch_with_one_line_and_a_rerun_resumes(tmp_path, model_dir):
    cases = make_case_folder(tmp_path / "cases", corrupt=())
    out = tmp_path / "out"
    command = [sys.executable, "-m", "medseg3d.cli", "batch", "-i", str(cases), "-o", str(out)]
    command += ["-m", str(model_dir), "--device", "cpu", "--no-progress"]
    full = subprocess.run(
        command, capture_output=True, text=True, timeout=300, preexec_fn=_file_size_limit(1)
    )
    assert full.returncode == 1, full.stderr
    assert "Traceback" not in full.stderr
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("medseg3d: error:") and "output storage is full" in last
    assert "rerun the same command to resume" in last
    assert not list(out.glob("*.nii.gz")) and not list(out.glob(f"{TEMP_MARK}*"))

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert sorted(r["status"] for r in rows(out).values()) == ["done"] * 5
    assert len(outputs(out)) == 5


def test_an_output_folder_that_cannot_be_written_is_one_line(cli, tmp_path, model_dir):
    cases = make_case_folder(tmp_path / "cases", count=1, corrupt=())
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = cli("batch", "-i", cases, "-o", blocker / "out", "-m", model_dir, "--device", "cpu")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "a_file is a file, not a folder" in result.stderr.strip().splitlines()[-1]
