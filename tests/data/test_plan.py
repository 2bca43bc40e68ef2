"""Fingerprint and plan: hand-computed statistics, patch budget, anisotropy, YAML round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from medseg3d.data import (
    Plan,
    compute_fingerprint,
    fit_patch_size,
    load_dataset,
    make_ct_like_case,
    make_plan,
    write_dataset,
)
from medseg3d.data.fingerprint import Fingerprint, reoriented_geometry
from medseg3d.data.synthetic import make_affine
from medseg3d.errors import ConfigError


@pytest.fixture(scope="module")
def ct_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ct")
    cases = {
        "a": make_ct_like_case((24, 20, 16), (14.0, 14.0, 10.0), seed=1, orientation="LPS"),
        "b": make_ct_like_case((20, 24, 16), (15.0, 13.0, 10.0), seed=2, orientation="ARS"),
        "c": make_ct_like_case((16, 24, 20), (10.0, 14.0, 12.0), seed=3, orientation="IRA"),
    }
    write_dataset(folder, cases, {"background": 0, "liver": 1, "kidney": 2})
    return folder, cases


def test_fingerprint_spacings_in_ras_order_and_foreground_statistics(ct_folder):
    folder, cases = ct_folder
    fingerprint = compute_fingerprint(load_dataset(folder), samples_per_case=10**9)
    # in RAS axis order: "ARS" (20, 24, 16) @ (15, 13, 10) -> R: 24 @ 13, A: 20 @ 15, S: 16 @ 10
    assert fingerprint.spacings == [[14.0, 14.0, 10.0], [13.0, 15.0, 10.0], [14.0, 12.0, 10.0]]
    assert fingerprint.shapes == [[24, 20, 16]] * 3
    # all foreground voxels sampled: statistics equal numpy's on the pooled foreground
    pooled = np.concatenate([img.array[lab.array > 0] for img, lab in cases.values()]).astype(float)
    stats = fingerprint.intensity[0]
    assert stats["mean"] == pytest.approx(pooled.mean())
    assert stats["std"] == pytest.approx(pooled.std())
    assert stats["percentile_00_5"] == pytest.approx(np.percentile(pooled, 0.5))
    assert stats["percentile_99_5"] == pytest.approx(np.percentile(pooled, 99.5))
    assert Fingerprint.from_dict(fingerprint.to_dict()) == fingerprint


def test_plan_from_fingerprint_ct(ct_folder):
    folder, _ = ct_folder
    fingerprint = compute_fingerprint(load_dataset(folder))
    plan = make_plan(fingerprint, depth=3, max_patch_voxels=16**3)
    assert plan.target_spacing == [14.0, 14.0, 10.0]  # median per axis
    assert plan.orientation == "RAS" and plan.spatial_dims == 3
    norm = plan.normalization[0]
    assert norm["scheme"] == "ct"
    assert norm["clip"] == pytest.approx(
        [fingerprint.intensity[0]["percentile_00_5"], fingerprint.intensity[0]["percentile_99_5"]],
        rel=1e-6,
    )
    assert norm["std"] == pytest.approx(fingerprint.intensity[0]["std"], rel=1e-6)
    assert all(p % 8 == 0 for p in plan.patch_size) and math.prod(plan.patch_size) <= 16**3
    assert plan.num_classes == 3 and plan.labels["kidney"] == 2


def test_plan_round_trips_through_yaml():
    plan = Plan(
        3,
        [1.0, 1.0, 2.5],
        [{"scheme": "zscore_nonzero"}],
        [64, 64, 32],
        {"background": 0, "x": 1},
        1,
        ["T2"],
    )
    text = yaml.safe_dump(plan.to_dict())
    assert Plan.from_dict(yaml.safe_load(text)) == plan
    with pytest.raises(ConfigError, match="unknown keys"):
        Plan.from_dict({**plan.to_dict(), "spacing": 1})
    with pytest.raises(ConfigError, match="scheme"):
        Plan.from_dict({**plan.to_dict(), "normalization": [{"scheme": "magic"}]})
    with pytest.raises(ConfigError, match="patch_size"):
        Plan.from_dict({**plan.to_dict(), "patch_size": [64, 64]})


def test_normalization_scheme_by_channel_name():
    stats = {
        "mean": 0.0,
        "std": 1.0,
        "median": 0.0,
        "percentile_00_5": -1.0,
        "percentile_99_5": 1.0,
        "min": -2,
        "max": 2,
    }
    fingerprint = Fingerprint(
        3,
        ["a"],
        [[1, 1, 1]],
        [[32, 32, 32]],
        [stats] * 3,
        ["CT", "T2", "noNorm"],
        {"background": 0},
    )
    schemes = [n["scheme"] for n in make_plan(fingerprint).normalization]
    assert schemes == ["ct", "zscore_nonzero", "none"]


def test_patch_size_budget_and_divisibility():
    assert fit_patch_size([48, 48, 48], 1.0, 128**3) == [48, 48, 48]
    assert fit_patch_size([50, 58, 7], 1.0, 128**3) == [48, 64, 16]
    patch = fit_patch_size([300, 300, 120], [0.8, 0.8, 2.5], 96**3)
    assert math.prod(patch) <= 96**3 and all(p % 16 == 0 for p in patch)
    assert fit_patch_size([200, 200], 1.0, 64**2, divisor=32) == [64, 64]


def test_anisotropic_spacing_rule():
    """nnU-Net: a coarse axis with few voxels gets the 10th percentile spacing instead of the median."""
    spacings = [[0.8, 0.8, 5.0], [0.8, 0.8, 5.0], [0.8, 0.8, 3.0], [0.8, 0.8, 5.0], [0.8, 0.8, 6.0]]
    shapes = [[512, 512, 40]] * 5
    stats = [
        {
            "mean": 0,
            "std": 1,
            "median": 0,
            "percentile_00_5": 0,
            "percentile_99_5": 1,
            "min": 0,
            "max": 1,
        }
    ]
    fingerprint = Fingerprint(3, list("abcde"), spacings, shapes, stats, ["MR"], {"background": 0})
    plan = make_plan(fingerprint)
    assert plan.target_spacing[:2] == [0.8, 0.8]
    assert plan.target_spacing[2] == pytest.approx(np.percentile([5, 5, 3, 5, 6], 10))


def test_reoriented_geometry_reads_the_affine():
    affine = make_affine((10, 20, 30), (1.0, 2.0, 3.0), "SLP")
    assert reoriented_geometry(affine, (10, 20, 30), "RAS") == ([2.0, 3.0, 1.0], [20, 30, 10])
