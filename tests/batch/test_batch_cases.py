"""Case discovery (NIfTI files, nnU-Net channel files, DICOM series), manifests, checks, shards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg3d.batch.cases import BatchCase, CaseList, check_cases
from medseg3d.batch.discover import discover_cases
from medseg3d.batch.manifest import read_manifest
from medseg3d.batch.shards import parse_shard, select_shard
from medseg3d.errors import BatchInputError, ConfigError
from medseg3d.io import Volume, write_dicom_series
from tests.batch.batch_helpers import affine, image, write_case


def ids(case_list: CaseList) -> list[str]:
    return [case.case_id for case in case_list.cases]


def test_folder_discovery_is_recursive_stable_and_skips_the_output_folder(tmp_path):
    write_case(tmp_path / "p01" / "ct.nii.gz", 0)
    write_case(tmp_path / "p02" / "ct.nii.gz", 1)
    write_case(tmp_path / "loose scan.nii", 2)
    write_case(tmp_path / "out" / "p01_ct.nii.gz", 3)  # a previous run's output
    (tmp_path / "notes.txt").write_text("not a scan")
    (tmp_path / ".hidden.nii.gz").write_bytes(b"")
    found = discover_cases(tmp_path, exclude=[tmp_path / "out"])
    assert ids(found) == ["loose_scan", "p01_ct", "p02_ct"]
    assert not found.problems
    assert ids(discover_cases(tmp_path, exclude=[tmp_path / "out"])) == ids(found)
    case = found.cases[1]
    assert case.inputs == (tmp_path / "p01" / "ct.nii.gz",)
    assert case.output_path(tmp_path / "o") == tmp_path / "o" / "p01_ct.nii.gz"


def test_nnunet_channel_files_are_grouped_for_multi_channel_models(tmp_path):
    for case in ("a", "b"):
        for channel in range(2):
            write_case(tmp_path / f"{case}_{channel:04d}.nii.gz", channel)
    write_case(tmp_path / "c_0000.nii.gz", 0)  # channel 1 missing
    found = discover_cases(tmp_path, channels=2)
    assert ids(found) == ["a", "b"]
    assert found.cases[0].inputs == (tmp_path / "a_0000.nii.gz", tmp_path / "a_0001.nii.gz")
    assert any("c: channel files 0000 found" in p for p in found.problems)
    # single-channel model: each file is a case, the _0000 suffix is dropped
    single = discover_cases(tmp_path, channels=1)
    assert ids(single) == ["a", "a_0001", "b", "b_0001", "c"]


def dicom_series(folder: Path, *, number: int, modality: str = "CT", patient="Doe^Jane"):
    volume = Volume(image(number, (10, 8, 4)), affine(0))
    return write_dicom_series(
        volume,
        folder,
        modality=modality,
        series_number=number,
        patient_name=patient,
        patient_id="PID-12345",
    )


def test_dicom_series_are_cases_with_ids_from_folders_never_from_headers(tmp_path):
    dicom_series(tmp_path / "study1" / "series", number=3)
    (tmp_path / "study2").mkdir()
    for number in (1, 2):  # two series mixed in one folder
        for path in dicom_series(tmp_path / "tmp", number=number):
            path.rename(tmp_path / "study2" / f"s{number}_{path.name}")
    write_case(tmp_path / "extra.nii.gz", 0)
    found = discover_cases(tmp_path)
    assert ids(found) == ["extra", "study1_series", "study2_s1", "study2_s2"]
    dicom = found.cases[1]
    assert dicom.dicom and dicom.inputs == (tmp_path / "study1" / "series",)
    assert dicom.series and dicom.series.startswith("1.")
    assert not any("Doe" in case.case_id or "12345" in case.case_id for case in found.cases)


def write_csv(path: Path, rows: list[str], header="case_id,input,series_uid,output") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_csv_and_json_manifests_resolve_relative_paths(tmp_path):
    write_case(tmp_path / "data" / "x.nii.gz", 0)
    write_case(tmp_path / "data" / "t2.nii.gz", 1)
    write_case(tmp_path / "data" / "adc.nii.gz", 2)
    csv_path = write_csv(
        tmp_path / "m.csv",
        ["a,data/x.nii.gz,,", "b,data/t2.nii.gz;data/adc.nii.gz,,b_out.nii.gz", ""],
    )
    cases = read_manifest(csv_path).cases
    assert [c.case_id for c in cases] == ["a", "b"]
    assert cases[0].inputs == (tmp_path / "data" / "x.nii.gz",) and cases[0].output is None
    assert len(cases[1].inputs) == 2 and cases[1].output_name == "b_out.nii.gz"

    json_path = tmp_path / "m.json"
    entries = [
        {"case_id": "a", "input": "data/x.nii.gz"},
        {"id": "b", "image": ["data/t2.nii.gz", "data/adc.nii.gz"], "output": "b_out.nii.gz"},
    ]
    json_path.write_text(json.dumps({"cases": entries}))
    assert read_manifest(json_path).cases == cases


def test_every_manifest_problem_is_reported_at_once(tmp_path):
    write_case(tmp_path / "x.nii.gz", 0)
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            "a,x.nii.gz,,",
            "a,x.nii.gz,,other.nii.gz",  # duplicate id
            "b,missing.nii.gz,,",  # missing file
            "c,x.nii.gz,,../escape.nii.gz",  # output outside the folder
            ",x.nii.gz,,",  # no id
        ],
    )
    with pytest.raises(BatchInputError) as raised:
        check_cases(read_manifest(manifest))
    message = str(raised.value)
    assert "case id 'a' appears 2 times" in message
    assert "missing.nii.gz does not exist" in message
    assert "escape.nii.gz" in message and "inside the output folder" in message
    assert "line 6: case_id missing" in message
    assert len(raised.value.problems) == 4
    assert "\n" not in message


def test_manifest_without_required_columns_says_which(tmp_path):
    manifest = write_csv(tmp_path / "m.csv", ["a,x.nii.gz"], header="name,file")
    with pytest.raises(BatchInputError, match="no 'case_id' column.*no 'input' column"):
        check_cases(read_manifest(manifest))


def test_channel_count_must_fit_the_model(tmp_path):
    write_case(tmp_path / "x.nii.gz", 0)
    cases = CaseList([BatchCase("a", (tmp_path / "x.nii.gz",) * 3)], tmp_path)
    with pytest.raises(BatchInputError, match="3 input files, the model takes 2"):
        check_cases(cases, channels=2)


def test_shards_partition_the_cases_deterministically():
    cases = [BatchCase(f"case{i:03d}", (Path(f"/x/{i}.nii.gz"),)) for i in range(23)]
    shards = [select_shard(cases, index, 4) for index in range(4)]
    assert sorted(c.case_id for shard in shards for c in shard) == sorted(c.case_id for c in cases)
    assert {len(shard) for shard in shards} == {5, 6}
    shuffled = list(np.random.default_rng(0).permutation(np.array(cases, dtype=object)))
    assert select_shard(shuffled, 2, 4) == shards[2]
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "1", "-1/4", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_two_spellings_of_one_output_in_a_manifest_are_refused(tmp_path):
    for name in ("x", "y", "z", "w"):
        write_case(tmp_path / f"{name}.nii.gz", 0)
    manifest = write_csv(
        tmp_path / "m.csv",
        [
            "x,x.nii.gz,,",
            "y,y.nii.gz,,./x.nii.gz",
            "z,z.nii.gz,,sub//w.nii.gz",
            "w,w.nii.gz,,sub/W.nii.gz",
        ],
    )
    with pytest.raises(BatchInputError) as raised:
        check_cases(read_manifest(manifest))
    message = str(raised.value)
    assert "output 'x.nii.gz' is written by 2 cases (x, y)" in message
    assert "output 'sub/w.nii.gz' is written by 2 cases (w, z)" in message


def test_colliding_folder_ids_get_a_path_hash_instead_of_stopping_the_batch(tmp_path):
    for relative in (
        "a b/ct.nii.gz",
        "a_b/ct.nii.gz",
        "scan.nii.gz",
        "scan_0000.nii.gz",
        "p02.nii.gz",
    ):
        write_case(tmp_path / relative, 0)
    found = check_cases(discover_cases(tmp_path))
    names = [case.case_id for case in found]
    assert len(set(names)) == 5 and "p02" in names  # an id without a clash is unchanged
    assert sorted(name[:-9] for name in names if name != "p02") == [
        "a_b_ct",
        "a_b_ct",
        "scan",
        "scan",
    ]
    assert names == [case.case_id for case in check_cases(discover_cases(tmp_path))]  # stable


def test_linked_study_folders_are_followed_and_link_loops_are_not(tmp_path):
    archive, elsewhere = tmp_path / "archive", tmp_path / "elsewhere"
    write_case(archive / "real" / "ct.nii.gz", 0)
    write_case(elsewhere / "study" / "ct.nii.gz", 1)
    (archive / "linked").symlink_to(elsewhere / "study", target_is_directory=True)
    (archive / "real" / "loop").symlink_to(archive, target_is_directory=True)
    assert ids(discover_cases(archive)) == ["linked_ct", "real_ct"]


def test_copies_of_one_dicom_series_in_two_studies_are_two_cases(tmp_path):
    paths = dicom_series(tmp_path / "tmp", number=2)
    for study in ("studyA", "studyB"):
        (tmp_path / "archive" / study).mkdir(parents=True)
        for path in paths:
            (tmp_path / "archive" / study / path.name).write_bytes(path.read_bytes())
    found = discover_cases(tmp_path / "archive")
    assert ids(found) == ["studyA", "studyB"]
    assert [case.inputs for case in found.cases] == [
        (tmp_path / "archive" / "studyA",),
        (tmp_path / "archive" / "studyB",),
    ]
    # one series exported in two halves (no instance repeated) stays one case
    split = tmp_path / "split" / "SE1"
    for index, path in enumerate(paths):
        (split / f"part{index % 2}").mkdir(parents=True, exist_ok=True)
        (split / f"part{index % 2}" / path.name).write_bytes(path.read_bytes())
    assert ids(discover_cases(tmp_path / "split")) == ["SE1"]
