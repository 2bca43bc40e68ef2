"""Dataset folders: MSD and nnU-Net layouts, and validation that reports every problem at once."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from medseg3d.data import load_dataset, make_ellipsoid_case, validate_dataset, write_dataset
from medseg3d.data.reading import read_case
from medseg3d.errors import DatasetError
from medseg3d.io import Volume

LABELS = {"background": 0, "a": 1, "b": 2}


def _cases(n=3, shape=(12, 12, 10)):
    return {f"case_{i}": make_ellipsoid_case(shape, seed=i) for i in range(n)}


@pytest.mark.parametrize("layout", ["msd", "nnunet"])
def test_both_layouts_parse_and_validate(tmp_path, layout):
    write_dataset(tmp_path, _cases(), LABELS, layout=layout, channel_names=["T2"])
    spec = validate_dataset(tmp_path)
    assert spec.layout == layout
    assert spec.case_ids == ["case_0", "case_1", "case_2"]
    assert spec.labels == LABELS
    assert spec.channel_names == ["T2"] and spec.modalities == ["T2"]
    assert spec.num_classes == 3
    suffix = "_0000.nii.gz" if layout == "nnunet" else ".nii.gz"
    assert spec.cases[0].images == [
        (tmp_path / f"imagesTr/case_0{suffix}").resolve()
    ] or spec.cases[0].images == [tmp_path / f"imagesTr/case_0{suffix}"]


def test_msd_labels_and_modality_form(tmp_path):
    write_dataset(tmp_path, _cases(1), LABELS, layout="msd")
    info = json.loads((tmp_path / "dataset.json").read_text())
    assert info["labels"] == {"0": "background", "1": "a", "2": "b"}
    assert info["modality"] == {"0": "CT"}
    assert info["training"][0] == {
        "image": "./imagesTr/case_0.nii.gz",
        "label": "./labelsTr/case_0.nii.gz",
    }


def test_multichannel_msd_4d_and_nnunet_per_channel_files(tmp_path):
    image, label = make_ellipsoid_case((10, 10, 8), seed=0)
    two = Volume(np.stack([image.array, -image.array], axis=-1), image.affine, has_channels=True)
    for layout in ("msd", "nnunet"):
        folder = tmp_path / layout
        write_dataset(
            folder, {"c": (two, label)}, LABELS, layout=layout, channel_names=["T2", "ADC"]
        )
        spec = validate_dataset(folder)
        assert spec.num_channels == 2
        assert len(spec.cases[0].images) == (1 if layout == "msd" else 2)
        channels, read_label = read_case(spec.cases[0])
        assert len(channels) == 2
        np.testing.assert_array_equal(channels[1].array, -image.array)
        np.testing.assert_array_equal(read_label.array, label.array)


def test_nnunet_test_cases_with_and_without_labels(tmp_path):
    write_dataset(
        tmp_path,
        _cases(2),
        LABELS,
        layout="nnunet",
        test_cases={"t": make_ellipsoid_case((8, 8, 8))},
    )
    spec = load_dataset(tmp_path)
    assert [c.case_id for c in spec.test_cases] == ["t"]
    assert spec.test_cases[0].label is not None


def _save(volume_array, affine, path):
    nib.save(nib.Nifti1Image(volume_array, affine), str(path))


def test_validation_reports_every_problem_in_one_error(tmp_path):
    cases = _cases(6)
    write_dataset(tmp_path, cases, LABELS, layout="msd")
    affine = cases["case_0"][0].affine
    # 0: missing label file; 1: label of another shape; 2: label on a shifted grid;
    # 3: undeclared label value; 4: NaN in the image; 5: unreadable (truncated) image.
    (tmp_path / "labelsTr/case_0.nii.gz").unlink()
    _save(np.zeros((5, 5, 5), np.uint8), affine, tmp_path / "labelsTr/case_1.nii.gz")
    shifted = affine.copy()
    shifted[0, 3] = 0.5
    _save(np.zeros((12, 12, 10), np.uint8), shifted, tmp_path / "labelsTr/case_2.nii.gz")
    bad = np.zeros((12, 12, 10), np.uint8)
    bad[0, 0, 0] = 7
    _save(bad, affine, tmp_path / "labelsTr/case_3.nii.gz")
    nan_image = np.zeros((12, 12, 10), np.float32)
    nan_image[1, 1, 1] = np.nan
    _save(nan_image, affine, tmp_path / "imagesTr/case_4.nii.gz")
    (tmp_path / "imagesTr/case_5.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    info = json.loads((tmp_path / "dataset.json").read_text())
    del info["modality"]
    (tmp_path / "dataset.json").write_text(json.dumps(info))

    with pytest.raises(DatasetError) as caught:
        validate_dataset(tmp_path)
    problems = caught.value.problems
    text = " | ".join(problems)
    assert "modality" in text  # missing dataset.json key
    assert "case_0: missing file labelsTr/case_0.nii.gz" in text
    assert "case_1" in text and "shape" in text
    assert "case_2" in text and "geometry" in text
    assert "case_3" in text and "[7]" in text
    assert "case_4" in text and "NaN" in text
    assert "case_5" in text and "cannot read" in text
    assert len(problems) == 7
    assert str(tmp_path) in str(caught.value) and "\n" not in str(caught.value)


def test_without_content_checks_only_files_are_checked(tmp_path):
    write_dataset(tmp_path, _cases(2), LABELS)
    _save(np.zeros((5, 5, 5), np.uint8), np.eye(4), tmp_path / "labelsTr/case_1.nii.gz")
    validate_dataset(tmp_path, check_content=False)
    (tmp_path / "imagesTr/case_0.nii.gz").unlink()
    with pytest.raises(DatasetError, match="missing file imagesTr/case_0.nii.gz"):
        validate_dataset(tmp_path, check_content=False)


def test_nnunet_problems_missing_channel_and_orphan_label(tmp_path):
    write_dataset(tmp_path, _cases(2), LABELS, layout="nnunet", channel_names=["T2", "ADC"])
    # only channel 0 was written per case (single-channel volumes), and an orphan label
    _save(np.zeros((12, 12, 10), np.uint8), np.eye(4), tmp_path / "labelsTr/ghost.nii.gz")
    with pytest.raises(DatasetError) as caught:
        validate_dataset(tmp_path)
    text = " | ".join(caught.value.problems)
    assert "case_0: missing file imagesTr/case_0_0001.nii.gz" in text
    assert "ghost" in text and "has no image" in text


def test_bad_dataset_json(tmp_path):
    with pytest.raises(DatasetError, match="no dataset.json"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "x": [1, 2]}}))
    with pytest.raises(DatasetError) as caught:
        validate_dataset(tmp_path)
    text = " | ".join(caught.value.problems)
    assert "region-based" in text and "channel_names" in text and "file_ending" in text
