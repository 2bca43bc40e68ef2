"""The preprocessed cache: memory maps, class locations, keys that notice changes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from medseg3d.data import (
    build_cache,
    cached_case_ids,
    cached_plan,
    class_locations,
    load_cached_case,
    load_dataset,
    make_ct_like_case,
    plan_dataset,
    preprocess,
    write_dataset,
)
from medseg3d.data.reading import read_case
from medseg3d.errors import DatasetError


@pytest.fixture
def dataset(tmp_path):
    cases = {
        f"ct_{i}": make_ct_like_case((20, 18, 16), (15.0, 15.0, 12.0), seed=i, orientation="LPS")
        for i in range(3)
    }
    write_dataset(tmp_path / "ds", cases, {"background": 0, "liver": 1, "kidney": 2})
    spec = load_dataset(tmp_path / "ds")
    return spec, plan_dataset(spec, depth=2, max_patch_voxels=16**3)


def _mtimes(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != "cache.json"}


def test_cache_holds_exactly_what_preprocess_returns(dataset, tmp_path):
    spec, plan = dataset
    folder = tmp_path / "cache"
    assert build_cache(spec, plan, folder, progress=False) == spec.case_ids
    assert cached_case_ids(folder) == spec.case_ids and cached_plan(folder) == plan
    cached = load_cached_case(folder, "ct_1")
    assert isinstance(cached.image, np.memmap) and not cached.image.flags.writeable
    reference = preprocess(*read_case(spec.case("ct_1"))[:1], plan, read_case(spec.case("ct_1"))[1])
    np.testing.assert_array_equal(cached.image, reference.image)
    np.testing.assert_array_equal(cached.label, reference.label)
    np.testing.assert_array_equal(cached.restore.affine, reference.restore.affine)
    assert sorted(cached.locations) == [1, 2]
    for value, coords in cached.locations.items():
        assert coords.shape[1] == 3 and coords.dtype == np.int32
        assert (cached.label[0][tuple(coords.T)] == value).all()
    assert not list(folder.glob(".medseg3d-tmp-*"))


def test_cache_rebuilds_only_what_changed(dataset, tmp_path):
    spec, plan = dataset
    folder = tmp_path / "cache"
    build_cache(spec, plan, folder, progress=False)
    before = _mtimes(folder)
    build_cache(spec, plan, folder, progress=False)
    assert _mtimes(folder) == before  # nothing re-preprocessed
    image = spec.case("ct_2").images[0]
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    build_cache(spec, plan, folder, progress=False)
    after = _mtimes(folder)
    assert after["ct_0.image.npy"] == before["ct_0.image.npy"]
    assert after["ct_2.image.npy"] != before["ct_2.image.npy"]
    plan.target_spacing = [20.0, 20.0, 20.0]
    build_cache(spec, plan, folder, progress=False)
    assert load_cached_case(folder, "ct_0").image.shape == (1, 15, 14, 10)  # 20 mm voxels
    assert json.loads((folder / "ct_0.json").read_text())["shape"] == [1, 15, 14, 10]
    assert all(_mtimes(folder)[f"ct_{i}.image.npy"] != after[f"ct_{i}.image.npy"] for i in range(3))


def test_a_half_written_case_is_redone(dataset, tmp_path):
    spec, plan = dataset
    folder = tmp_path / "cache"
    build_cache(spec, plan, folder, progress=False)
    (folder / "ct_1.label.npy").unlink()  # e.g. killed mid-way in an older run
    build_cache(spec, plan, folder, progress=False)
    assert load_cached_case(folder, "ct_1").label is not None


def test_missing_cache_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="build_cache"):
        load_cached_case(tmp_path, "nope")
    with pytest.raises(DatasetError, match="cache.json"):
        cached_case_ids(tmp_path)


def test_class_locations_sample_large_classes():
    label = np.zeros((1, 60, 60, 60), np.uint8)
    label[0, :50, :50, :50] = 1  # 125,000 voxels -> 10,000 locations
    label[0, 55, 55, 55] = 3
    locations = class_locations(label)
    assert sorted(locations) == [1, 3]
    assert len(locations[1]) == 10_000 and len(locations[3]) == 1
    assert len(np.unique(locations[1], axis=0)) == 10_000
    np.testing.assert_array_equal(class_locations(label)[1], locations[1])  # seeded


def test_old_temporaries_of_killed_builds_are_removed(dataset, tmp_path):
    spec, plan = dataset
    folder = tmp_path / "cache"
    folder.mkdir()
    old, fresh = folder / ".medseg3d-tmp-old.npy", folder / ".medseg3d-tmp-fresh.npy"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (0, 0))
    build_cache(spec, plan, folder, progress=False)
    assert not old.exists() and fresh.exists()  # a concurrent build's file is left alone
