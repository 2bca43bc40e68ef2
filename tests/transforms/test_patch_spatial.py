"""Patch sampling (foreground oversampling, memmaps), crop/pad, flips and 90-degree rotations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from medseg3d.errors import ShapeError
from medseg3d.transforms import (
    RandFlipd,
    RandForegroundPatchd,
    RandRot90,
    class_locations,
    crop_or_pad,
    crop_patch,
    sample_patch_bbox,
)


def test_crop_or_pad_reads_inside_and_pads_outside():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 5, 6)
    out = crop_or_pad(x, (-2, 3), (4, 5), value=-1)
    assert out.shape == (2, 4, 5)
    assert (out[:, :2] == -1).all() and (out[:, :, 3:] == -1).all()
    assert torch.equal(out[:, 2:, :3], x[:, :2, 3:])
    outside = crop_or_pad(x, (-10, 20), (3, 3))
    assert outside.shape == (2, 3, 3) and not outside.any()


def test_foreground_oversampling_hits_the_foreground(rng):
    label = np.zeros((60, 50, 40), dtype=np.uint8)
    label[50:54, 5:8, 30:33] = 2
    locations = class_locations(label)
    assert set(locations) == {2} and locations[2].shape == (4 * 3 * 3, 3)
    state = np.random.RandomState(0)
    hits = 0
    for _ in range(200):
        box = sample_patch_bbox(label.shape, (16, 16, 16), locations, 0.5, state)
        assert all(0 <= s and e <= n for (s, e), n in zip(box, label.shape))
        hits += bool(label[tuple(slice(s, e) for s, e in box)].any())
    assert 80 <= hits <= 130  # ~50% forced plus a few random hits on a tiny object
    never = [sample_patch_bbox(label.shape, (16, 16, 16), label, 0.0, state) for _ in range(20)]
    always = [sample_patch_bbox(label.shape, (16, 16, 16), label, 1.0, state) for _ in range(20)]
    assert all(label[tuple(slice(s, e) for s, e in box)].any() for box in always)
    assert len({box for box in never}) > 1


def test_small_volumes_are_padded_symmetrically():
    box = sample_patch_bbox((10, 30), (16, 20), None, 0.0, np.random.RandomState(0))
    assert box[0] == (-3, 13)
    with pytest.raises(ShapeError):
        sample_patch_bbox((10, 30), (16, 20, 4))


def test_patch_from_a_memmap_reads_only_the_patch(tmp_path):
    path = tmp_path / "image.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(1, 40, 40, 40))
    array[:] = np.arange(40, dtype=np.float32)[None, :, None, None]
    array.flush()
    image = np.load(path, mmap_mode="r")
    label = np.zeros((1, 40, 40, 40), dtype=np.uint8)
    label[0, 30, 30, 30] = 1
    transform = RandForegroundPatchd(["image", "label"], (8, 8, 8), foreground_probability=1.0)
    transform.set_random_state(0)
    out = transform({"image": image, "label": label, "class_locations": class_locations(label[0])})
    assert out["image"].shape == (1, 8, 8, 8) and out["label"].sum() == 1
    start = int(out["image"][0, 0, 0, 0])
    assert torch.equal(
        out["image"][0, :, 0, 0], torch.arange(start, start + 8, dtype=torch.float32)
    )
    torch.testing.assert_close(
        crop_patch(image, ((0, 2), (0, 1), (0, 1)))[0, :, 0, 0], torch.tensor([0.0, 1.0])
    )


def world_of_max(x: MetaTensor) -> np.ndarray:
    index = np.unravel_index(int(x.as_tensor().argmax()), x.shape[1:])
    return (np.asarray(x.affine) @ np.array([*index, 1.0]))[:3]


def test_flip_and_rot90_move_voxels_and_keep_world_positions():
    affine = torch.tensor(
        [[2.0, 0, 0, -10], [0, 1.5, 0, 5], [0, 0, 3.0, 1], [0, 0, 0, 1]], dtype=torch.float64
    )
    volume = torch.zeros(1, 6, 6, 5)
    volume[0, 1, 4, 2] = 1
    image = MetaTensor(volume, affine=affine)
    flip = RandFlipd(["image"], axis_prob=1.0)
    flip.set_random_state(0)
    flipped = flip({"image": image})["image"]
    assert flipped[0, 4, 1, 2] == 1
    np.testing.assert_allclose(world_of_max(flipped), world_of_max(image))
    for seed in range(6):
        rotate = RandRot90(prob=1.0)
        rotate.set_random_state(seed)
        rotated = rotate(image)
        assert rotated.shape[1:] in {(6, 6, 5)} and isinstance(rotated, MetaTensor)
        np.testing.assert_allclose(world_of_max(rotated), world_of_max(image))
    label = (volume > 0).to(torch.int16).numpy()
    out = flip({"image": image, "label": label})
    assert out["image"].dtype == torch.float32
