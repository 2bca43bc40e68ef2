"""Dataset validation rules: consecutive label values, no ignore labels, numTraining in both
layouts, extra channel files, channel geometry advice, a file_ending the files do not have."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg3d.data import make_ellipsoid_case, validate_dataset, write_dataset
from medseg3d.errors import DatasetError
from medseg3d.io import Volume

SHAPE = (8, 8, 8)
LABELS = {"background": 0, "a": 1, "b": 2}


def _problems(folder) -> list[str]:
    with pytest.raises(DatasetError) as caught:
        validate_dataset(folder)
    assert "\n" not in str(caught.value)
    return caught.value.problems


def _write(folder, layout="nnunet", labels=LABELS, channels=1, n=2) -> Path:
    """``n`` tiny cases with label values 0, 1, 2, remapped onto the smallest non-negative values
    of ``labels``."""
    values = sorted(v for v in labels.values() if v >= 0)
    cases = {}
    for i in range(n):
        image, label = make_ellipsoid_case(SHAPE, seed=i)
        array = np.asarray(values, dtype=np.int16)[np.clip(label.array, 0, len(values) - 1)]
        if channels > 1:
            stacked = np.stack([image.array + c for c in range(channels)], axis=-1)
            image = Volume(stacked, image.affine, has_channels=True)
        cases[f"c{i}"] = (image, Volume(array, label.affine))
    names = [f"MR{c}" for c in range(channels)]
    return write_dataset(folder, cases, labels, layout=layout, channel_names=names)


def _edit_json(folder: Path, **changes) -> None:
    info = json.loads((folder / "dataset.json").read_text())
    info.update(changes)
    (folder / "dataset.json").write_text(json.dumps(info))


@pytest.mark.parametrize("layout", ["nnunet", "msd"])
def test_label_values_with_gaps_are_refused(tmp_path, layout):
    _write(tmp_path, layout, labels={"background": 0, "two": 2, "five": 5})
    assert _problems(tmp_path) == [
        "dataset.json: label values [0, 2, 5] are not consecutive: the network would get "
        "6 outputs, 3 of them for values no label declares - relabel to 0..2 in dataset.json "
        "and in every label file (2 -> 1, 5 -> 2); nnU-Net has the same rule"
    ]


IGNORE_ADVICE = (
    " (a label named 'ignore' or a negative value) - remove it from 'labels' and relabel its "
    "voxels with a declared class or 0 (background)"
)


@pytest.mark.parametrize(
    ("name", "value"), [("ignore", 3), ("ignore", 255), ("Ignore", 3), ("ignore", -1), ("void", -1)]
)
@pytest.mark.parametrize("layout", ["nnunet", "msd"])
def test_ignore_labels_are_refused_in_one_line(tmp_path, layout, name, value):
    labels = {**LABELS, name: value}
    _write(tmp_path, layout, labels=labels)
    # the label files hold the ignore value too, as an ignore label's files would
    for path in (tmp_path / "labelsTr").iterdir():
        image = nib.load(path)
        array = np.asarray(image.dataobj).astype(np.int16)
        array[:2] = value
        nib.save(nib.Nifti1Image(array, image.affine), str(path))
    assert _problems(tmp_path) == [
        f"dataset.json: ignore labels are not supported yet: {name!r}: {value}" + IGNORE_ADVICE
    ]


def test_consecutive_labels_and_the_sample_dataset_still_validate(tmp_path):
    _write(tmp_path / "plain", labels={"background": 0, "a": 1, "b": 2, "ignored_organ": 3})
    assert validate_dataset(tmp_path / "plain").num_classes == 4
    sample = Path(__file__).resolve().parents[2] / "sample_data" / "ct_dataset"
    assert validate_dataset(sample).num_classes == 3


def test_msd_num_training_is_checked(tmp_path):
    _write(tmp_path, "msd", n=2)
    validate_dataset(tmp_path)
    _edit_json(tmp_path, numTraining=10)
    assert _problems(tmp_path) == ["dataset.json: numTraining is 10 but 'training' lists 2 cases"]


def test_extra_channel_file_is_reported(tmp_path):
    _write(tmp_path, channels=2)
    shutil.copy(tmp_path / "imagesTr/c0_0001.nii.gz", tmp_path / "imagesTr/c0_0002.nii.gz")
    assert _problems(tmp_path) == [
        "c0: imagesTr/c0_0002.nii.gz is channel 2 but dataset.json declares 2 channel(s) - "
        "remove the file or add the channel to 'channel_names'"
    ]


def _shift(path: Path, mm: float = 0.5) -> None:
    image = nib.load(path)
    affine = image.affine.copy()
    affine[0, 3] += mm
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), affine), str(path))


def test_channel_and_label_geometry_mismatches_get_their_own_advice(tmp_path):
    _write(tmp_path, channels=2)
    _shift(tmp_path / "imagesTr/c0_0001.nii.gz")
    _shift(tmp_path / "labelsTr/c1.nii.gz")
    assert _problems(tmp_path) == [
        "c0: imagesTr/c0_0001.nii.gz and imagesTr/c0_0000.nii.gz differ in geometry (affines up "
        "to 0.5 mm apart): resample every channel onto the grid of imagesTr/c0_0000.nii.gz",
        "c1: labelsTr/c1.nii.gz and imagesTr/c1_0000.nii.gz differ in geometry (affines up "
        "to 0.5 mm apart): resample the label onto the image grid",
    ]


def test_file_ending_that_the_files_do_not_have(tmp_path):
    _write(tmp_path, n=3)
    _edit_json(tmp_path, file_ending=".nii")
    assert _problems(tmp_path) == [
        "imagesTr/ holds 3 files ending in '.nii.gz' but dataset.json's file_ending is '.nii', "
        'so they are not read - set "file_ending": ".nii.gz" or convert them',
        "dataset.json: numTraining is 3 but imagesTr/ holds 0 cases (files ending in '.nii')",
        "no training cases found",
    ]


def test_every_problem_is_listed_together(tmp_path):
    _write(tmp_path, channels=2, labels={"background": 0, "a": 1, "c": 3, "ignore": 255})
    shutil.copy(tmp_path / "imagesTr/c1_0000.nii.gz", tmp_path / "imagesTr/c1_0005.nii.gz")
    _shift(tmp_path / "imagesTr/c0_0001.nii.gz")
    _edit_json(tmp_path, numTraining=5)
    problems = _problems(tmp_path)
    assert problems == [
        "dataset.json: ignore labels are not supported yet: 'ignore': 255" + IGNORE_ADVICE,
        "dataset.json: label values [0, 1, 3] are not consecutive: the network would get "
        "4 outputs, 1 of them for values no label declares - relabel to 0..2 in dataset.json "
        "and in every label file (3 -> 2); nnU-Net has the same rule",
        "c1: imagesTr/c1_0005.nii.gz is channel 5 but dataset.json declares 2 channel(s) - "
        "remove the file or add the channel to 'channel_names'",
        "dataset.json: numTraining is 5 but imagesTr/ holds 2 cases (files ending in '.nii.gz')",
        "c0: imagesTr/c0_0001.nii.gz and imagesTr/c0_0000.nii.gz differ in geometry (affines up "
        "to 0.5 mm apart): resample every channel onto the grid of imagesTr/c0_0000.nii.gz",
    ]
