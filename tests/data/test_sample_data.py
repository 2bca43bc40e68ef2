"""The committed sample data: it validates and the generator reproduces it byte for byte."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from medseg3d.data import load_dataset, validate_dataset
from medseg3d.io import load_volume

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


def test_sample_dataset_validates():
    spec = validate_dataset(SAMPLE / "ct_dataset")
    assert spec.layout == "msd" and len(spec.cases) == 6
    assert spec.labels == {"background": 0, "liver": 1, "kidney": 2}
    assert [c.case_id for c in spec.test_cases] == ["ct_100"] and spec.test_cases[0].label.is_file()
    orientations = {"".join(load_volume(c.images[0]).orientation) for c in spec.cases}
    assert len(orientations) >= 4


def test_sample_dicom_series_is_oblique_and_matches_its_label():
    image = load_volume(SAMPLE / "dicom_oblique")
    label = load_volume(SAMPLE / "dicom_oblique_label.nii.gz")
    assert image.spatial_shape == label.spatial_shape == (48, 48, 32)
    np.testing.assert_allclose(image.affine, label.affine, atol=1e-4)
    direction = image.affine[:3, :3] / np.linalg.norm(image.affine[:3, :3], axis=0)
    assert np.abs(direction - np.round(direction)).max() > 0.1  # oblique
    assert image.array.min() == -1024 and image.meta.get("modality") == "CT"


def test_generator_is_deterministic_and_matches_the_committed_files(tmp_path):
    spec = importlib.util.spec_from_file_location("sample_generate", SAMPLE / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--output", str(tmp_path)]) == 0
    committed = sorted(
        p.relative_to(SAMPLE)
        for p in SAMPLE.rglob("*")
        if p.is_file() and p.suffix in (".gz", ".dcm", ".json")
    )
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated == committed
    for relative in generated:
        assert (tmp_path / relative).read_bytes() == (SAMPLE / relative).read_bytes(), relative
    assert (
        load_dataset(tmp_path / "ct_dataset").case_ids
        == load_dataset(SAMPLE / "ct_dataset").case_ids
    )
