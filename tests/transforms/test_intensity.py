"""Intensity augmentations against hand-computed and scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from medseg3d import transforms
from medseg3d.errors import ConfigError, ShapeError
from medseg3d.transforms import (
    BiasField,
    Contrast,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    LowResolution,
    MultiplicativeBrightness,
    ScaleShiftIntensity,
    gaussian_smooth,
)

ALL = [
    GaussianNoise(),
    GaussianBlur(channel_prob=1.0),
    MultiplicativeBrightness(),
    Contrast(),
    Gamma(),
    Gamma(invert=True),
    LowResolution(channel_prob=1.0),
    BiasField(),
    ScaleShiftIntensity(),
]


@pytest.fixture
def image() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(2, 12, 10, 8, generator=generator) * 3 + 1


@pytest.mark.parametrize("augment", ALL, ids=lambda a: type(a).__name__)
def test_sample_then_apply_is_reproducible_and_keeps_shape(augment, image):
    first = augment.sample(np.random.RandomState(5), tuple(image.shape))
    again = augment.sample(np.random.RandomState(5), tuple(image.shape))
    assert first == again
    out = augment.apply(image, first)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert torch.equal(out, augment.apply(image, again))
    assert torch.isfinite(out).all()
    assert not torch.equal(out, image)


def test_gaussian_noise_has_the_drawn_std(image):
    std, seed = 0.5, 3
    noise = GaussianNoise().apply(torch.zeros(1, 64, 64, 16), (std, seed))
    assert abs(float(noise.std()) - std) < 0.01 and abs(float(noise.mean())) < 0.01


def test_blur_matches_scipy_in_the_interior():
    volume = torch.rand(16, 15, 14)
    sigma = (0.8, 1.3, 0.6)
    reference = gaussian_filter(volume.double().numpy(), sigma, mode="nearest", truncate=3.0)
    ours = gaussian_smooth(volume, sigma).numpy()
    np.testing.assert_allclose(ours, reference, atol=2e-3)


def test_channel_prob_zero_leaves_channels_alone(image):
    for augment in (
        GaussianBlur(channel_prob=0.0),
        LowResolution(channel_prob=0.0),
        Gamma(channel_prob=0.0),
    ):
        params = augment.sample(np.random.RandomState(0), tuple(image.shape))
        assert params == [None, None]
        assert torch.equal(augment.apply(image, params), image)


def test_brightness_contrast_gamma_follow_their_formulas(image):
    channel = image[:1]
    assert torch.allclose(MultiplicativeBrightness().apply(channel, [1.2]), channel * 1.2)
    contrasted = Contrast(preserve_range=False).apply(channel, [0.5])
    assert torch.allclose(contrasted, (channel - channel.mean()) * 0.5 + channel.mean())
    stretched = Contrast().apply(channel, [2.0])
    assert stretched.min() >= channel.min() - 1e-6 and stretched.max() <= channel.max() + 1e-6
    gamma = Gamma(retain_stats=False).apply(channel, [2.0])
    low, span = channel.min(), channel.max() - channel.min()
    assert torch.allclose(gamma, ((channel - low) / span) ** 2 * span + low, atol=1e-5)
    retained = Gamma().apply(channel, [2.0])
    assert torch.allclose(retained.mean(), channel.mean(), atol=1e-4)
    assert torch.allclose(retained.std(), channel.std(), atol=1e-4)
    shifted = ScaleShiftIntensity().apply(channel, [(0.1, -0.2)])
    assert torch.allclose(shifted, channel * 1.1 - 0.2)


def test_low_resolution_is_blockwise_then_smooth():
    volume = torch.arange(16.0).repeat(16, 1)[None]  # a ramp along the last axis
    out = LowResolution().apply(volume, [(8, 8)])
    assert out.shape == volume.shape
    assert float((out - volume).abs().max()) <= 1.0 + 1e-5  # a half-resolution ramp stays close


def test_bias_field_is_smooth_and_positive():
    ones = torch.ones(1, 20, 20, 20)
    params = BiasField().sample(np.random.RandomState(0), tuple(ones.shape))
    field = BiasField().apply(ones, params)
    assert (field > 0).all()
    assert (
        float(field.log().diff(dim=1).abs().max()) < 0.5
    )  # smooth: small relative change per voxel


def test_invalid_ranges_raise():
    with pytest.raises(ConfigError, match="std_range"):
        GaussianNoise(std_range=(0.2, 0.1))
    with pytest.raises(ConfigError, match="channel_prob"):
        GaussianBlur(channel_prob=2)
    with pytest.raises(ConfigError, match="gamma_range"):
        Gamma(gamma_range=(0, 1))


DICTIONARY_TRANSFORMS = {
    "RandGaussianNoised": {},
    "RandGaussianBlurd": {"channel_prob": 1.0},
    "RandBrightnessd": {},
    "RandContrastd": {},
    "RandGammad": {},
    "RandLowResolutiond": {"channel_prob": 1.0},
    "RandBiasFieldd": {},
    "RandScaleShiftIntensityd": {},
}


@pytest.mark.parametrize("channels", [(1, 2), (2, 1)], ids=["1-then-2", "2-then-1"])
@pytest.mark.parametrize("name", sorted(DICTIONARY_TRANSFORMS))
def test_dictionary_transforms_keep_each_keys_channels(name, channels):
    """Keys with other channel counts than the first keep them, and one draw serves all keys:
    the same channel gets the same change in every key."""
    first, second = channels
    generator = torch.Generator().manual_seed(1)
    volume = torch.rand(2, 8, 7, 6, generator=generator) + 0.5
    data = {
        "image": volume[:first].clone(),
        "prior": volume[:second].clone(),
        "copy": volume[:first],
    }
    transform = getattr(transforms, name)(
        ["image", "prior", "copy"], prob=1.0, **DICTIONARY_TRANSFORMS[name]
    )
    transform.set_random_state(0)
    out = transform(data)
    assert out["image"].shape == (first, 8, 7, 6) and out["prior"].shape == (second, 8, 7, 6)
    assert not torch.equal(out["image"], data["image"])
    torch.testing.assert_close(out["copy"], out["image"])  # equal channel counts: same draw
    torch.testing.assert_close(out["prior"][:1], out["image"][:1])  # shared channel: same change
    alone = getattr(transforms, name)(["image"], prob=1.0, **DICTIONARY_TRANSFORMS[name])
    alone.set_random_state(0)  # the first key gets what it got before other keys were added
    torch.testing.assert_close(alone({"image": data["image"]})["image"], out["image"])


def test_params_drawn_for_other_channels_are_refused(image):
    params = GaussianBlur(channel_prob=1.0).sample(np.random.RandomState(0), (1, 12, 10, 8))
    with pytest.raises(ShapeError, match="drawn for 1 channel"):
        GaussianBlur().apply(image, params)
    with pytest.raises(ShapeError, match="MultiplicativeBrightness"):
        MultiplicativeBrightness().apply(image, [1.1])
