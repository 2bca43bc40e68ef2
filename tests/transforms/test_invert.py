"""MONAI's inverse of medseg3d transforms: TestTimeAugmentation and Invertd map back exactly,
and a resampled sample is refused instead of being inverted wrongly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, TestTimeAugmentation
from monai.transforms import Compose, Invertd

from medseg3d.errors import ConfigError
from medseg3d.transforms import (
    RandElasticDeform,
    RandElasticDeformd,
    RandFlip,
    RandFlipd,
    RandForegroundPatchd,
    RandRot90,
    RandRot90d,
)

AFFINE = torch.tensor(
    [[0, -1.5, 0, 10], [1.2, 0, 0, -4], [0, 0, 2.0, 3], [0, 0, 0, 1]], dtype=torch.float64
)


def ramp(shape=(8, 8, 8)) -> MetaTensor:
    """Every voxel a different value (none 0), so any misplaced voxel shows."""
    count = int(np.prod(shape))
    values = torch.arange(1, count + 1, dtype=torch.float32).view(1, *shape)
    return MetaTensor(values, affine=AFFINE)


@pytest.mark.parametrize(
    "transform",
    [RandFlipd("image"), RandRot90d("image", prob=1.0), RandRot90d("image", axes=[(0, 1)])],
    ids=["flip", "rot90", "rot90-one-plane"],
)
def test_test_time_augmentation_maps_every_prediction_back(transform):
    image = ramp()
    tta = TestTimeAugmentation(
        Compose([transform]),
        batch_size=4,
        num_workers=0,
        inferrer_fn=lambda x: x,
        device="cpu",
        orig_key="image",
        image_key="image",
        return_full_data=True,
        progress=False,
    )
    predictions = tta({"image": image.clone()}, num_examples=8)
    assert len(predictions) == 8
    for prediction in predictions:
        assert torch.equal(prediction.as_tensor(), image.as_tensor())
        torch.testing.assert_close(prediction.affine, image.affine)


def test_invertd_undoes_flip_rot90_patch_and_centre_crop():
    image = ramp((12, 12, 10))
    label = MetaTensor((image.as_tensor() % 5).to(torch.uint8), affine=AFFINE)
    keys = ["image", "label"]
    chain = Compose(
        [
            RandFlipd(keys, axis_prob=1.0),
            RandRot90d(keys, prob=1.0, axes=[(0, 1)]),
            RandForegroundPatchd(keys, (9, 8, 8), foreground_probability=1.0),
            RandElasticDeformd(keys, prob=0.0, spatial_size=(7, 6, 6)),  # a centre crop only
        ]
    )
    chain.set_random_state(3)
    out = chain({"image": image.clone(), "label": label.clone()})
    out["pred"] = out["image"].clone()
    inverted = Invertd(["pred", "label"], chain, orig_keys="image")(out)
    patch = inverted["pred"].as_tensor() != 0  # the final patch, back in place
    assert int(patch.sum()) == 7 * 6 * 6
    for key, original in (("pred", image), ("label", label)):
        back = inverted[key]
        assert back.shape == original.shape and back.dtype == original.dtype
        torch.testing.assert_close(back.affine, original.affine)
        assert torch.equal(back.as_tensor(), original.as_tensor() * patch)  # zeros around it


def test_array_flip_and_rot90_invert_exactly():
    image = ramp((6, 6, 5))
    for transform in (RandFlip(axis_prob=1.0), RandRot90(prob=1.0)):
        for seed in range(4):
            transform.set_random_state(seed)
            moved = transform(image.clone())
            back = transform.inverse(moved)
            assert torch.equal(back.as_tensor(), image.as_tensor())
            torch.testing.assert_close(back.affine, image.affine)
            assert back.applied_operations == []


def test_a_resampled_sample_is_not_inverted_silently():
    keys = ["image"]
    chain = Compose([RandElasticDeformd(keys, spatial_size=(6, 6, 6), rotate_range=0.5)])
    chain.set_random_state(0)
    out = chain({"image": ramp()})
    out["pred"] = out["image"].clone()
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps it, keeping the reason
        Invertd("pred", chain, orig_keys="image")(out)
    assert isinstance(raised.value.__cause__, ConfigError)
    assert "no exact inverse" in str(raised.value.__cause__)
    with pytest.raises(ConfigError, match="no exact inverse"):
        chain.transforms[0].inverse(out)
    array = RandElasticDeform(rotate_range=0.5)
    with pytest.raises(ConfigError, match="no exact inverse"):
        array.inverse(array(ramp()))


def test_inverse_needs_the_metatensor_the_transform_returned():
    flip = RandFlip(axis_prob=1.0)
    with pytest.raises(ConfigError, match="needs the MetaTensor"):
        flip.inverse(flip(torch.rand(1, 4, 4, 4)))
