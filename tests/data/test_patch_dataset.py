"""Random patches from the cache: shapes, oversampling, determinism, transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg3d.data import (
    PatchDataset,
    build_cache,
    load_dataset,
    make_ellipsoid_case,
    plan_dataset,
    write_dataset,
)
from medseg3d.data.patch_dataset import choose_patch_start, crop_patch
from medseg3d.errors import ConfigError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("patches")
    cases = {f"e{i}": make_ellipsoid_case((40, 40, 24), seed=i, num_classes=1) for i in range(2)}
    write_dataset(root / "ds", cases, {"background": 0, "blob": 1}, channel_names=["MR"])
    spec = load_dataset(root / "ds")
    plan = plan_dataset(spec, depth=3, max_patch_voxels=16**3)
    build_cache(spec, plan, root / "cache", progress=False)
    return root / "cache"


def test_patches_shapes_and_dtypes(cache):
    dataset = PatchDataset(cache, (16, 16, 8), samples_per_epoch=5)
    sample = dataset[0]
    assert sample["image"].shape == (1, 16, 16, 8) and sample["image"].dtype == torch.float32
    assert sample["label"].shape == (1, 16, 16, 8) and sample["label"].dtype == torch.int64
    assert sample["case_id"] in ("e0", "e1") and len(dataset) == 5
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["image"].shape == (2, 1, 16, 16, 8)


def test_foreground_oversampling(cache):
    always = PatchDataset(cache, (8, 8, 8), samples_per_epoch=20, foreground_fraction=1.0)
    assert all(always[i]["label"].any() for i in range(20))
    never = PatchDataset(cache, (8, 8, 8), samples_per_epoch=40, foreground_fraction=0.0)
    assert sum(bool(never[i]["label"].any()) for i in range(40)) < 40  # mostly background
    with pytest.raises(ConfigError):
        PatchDataset(cache, (8, 8, 8), foreground_fraction=1.5)


def test_same_index_same_patch_until_the_epoch_changes(cache):
    dataset = PatchDataset(cache, (16, 16, 8), seed=3)
    first = dataset[7]["image"]
    assert torch.equal(PatchDataset(cache, (16, 16, 8), seed=3)[7]["image"], first)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[7]["image"], first)


def test_transform_is_applied_and_case_ids_restrict(cache):
    def flip(sample):
        sample["image"] = -sample["image"]
        sample["flipped"] = True
        return sample

    dataset = PatchDataset(cache, (16, 16, 8), case_ids=["e1"], transform=flip)
    sample = dataset[0]
    assert sample["flipped"] and sample["case_id"] == "e1"


def test_patch_larger_than_the_image_is_padded():
    rng = np.random.default_rng(0)
    start = choose_patch_start((4, 10), (8, 6), rng)
    assert start[0] == -2 and 0 <= start[1] <= 4
    array = np.arange(40, dtype=np.float32).reshape(1, 4, 10)
    patch = crop_patch(array, start, (8, 6), fill=-1)
    assert patch.shape == (1, 8, 6)
    assert (patch[0, :2] == -1).all() and (patch[0, 6:] == -1).all()
    np.testing.assert_array_equal(patch[0, 2:6], array[0, :, start[1] : start[1] + 6])
    assert choose_patch_start((20, 20), (8, 8), rng, centre=(19, 0)) == (12, 0)


def test_two_dimensional_dataset_end_to_end(tmp_path):
    cases = {f"e{i}": make_ellipsoid_case((40, 32), seed=i, spacing=(0.5, 0.5)) for i in range(2)}
    write_dataset(tmp_path / "ds", cases, {"background": 0, "a": 1, "b": 2}, channel_names=["MR"])
    spec = load_dataset(tmp_path / "ds")
    plan = plan_dataset(spec, depth=3)
    assert plan.spatial_dims == 2 and plan.orientation is None and plan.patch_size == [40, 32]
    build_cache(spec, plan, tmp_path / "cache", progress=False)
    sample = PatchDataset(tmp_path / "cache", plan.patch_size, foreground_fraction=1.0)[0]
    assert sample["image"].shape == (1, 40, 32) and sample["label"].any()
