"""Normalisation: pure functions, MONAI reference, cacheable MONAI transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset
from monai.transforms import Compose, NormalizeIntensity

from medseg3d.errors import ConfigError
from medseg3d.transforms import (
    NormalizeCTd,
    RandGaussianNoised,
    ZScoreNonzerod,
    ct_statistics,
    normalize_ct,
    zscore_nonzero,
)


def test_normalize_ct_clips_then_zscores_numpy_and_torch_alike():
    values = np.array([[-2000.0, -100.0, 40.0, 300.0, 3000.0]])
    expected = (np.clip(values, -150, 250) - 50) / 100
    out = normalize_ct(values, -150, 250, 50, 100)
    assert out.dtype == np.float32 and isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    torch.testing.assert_close(
        normalize_ct(torch.from_numpy(values), -150, 250, 50, 100),
        torch.from_numpy(expected).float(),
    )
    assert np.array_equal(
        values, np.array([[-2000.0, -100.0, 40.0, 300.0, 3000.0]])
    )  # input untouched
    with pytest.raises(ConfigError, match="std"):
        normalize_ct(values, -150, 250, 50, 0)


def test_ct_statistics_are_percentiles_and_clipped_moments(rng):
    values = rng.normal(40, 30, 10000)
    stats = ct_statistics(values)
    assert stats["clip_low"] == pytest.approx(np.percentile(values, 0.5))
    clipped = np.clip(values, stats["clip_low"], stats["clip_high"])
    assert stats["mean"] == pytest.approx(clipped.mean()) and stats["std"] == pytest.approx(
        clipped.std()
    )


def test_zscore_nonzero_matches_monai(rng):
    image = rng.normal(100, 20, (2, 10, 9, 8)).astype(np.float32)
    image[:, :3] = 0
    reference = NormalizeIntensity(nonzero=True, channel_wise=True)(image.copy())
    ours = zscore_nonzero(image, channel_wise=True)
    np.testing.assert_allclose(ours, np.asarray(reference), atol=1e-4)
    assert (ours[:, :3] == 0).all()
    torch.testing.assert_close(
        zscore_nonzero(torch.from_numpy(image), channel_wise=True),
        torch.from_numpy(ours),
        atol=1e-5,
        rtol=0,
    )
    assert not zscore_nonzero(np.zeros((4, 4))).any()  # empty mask: no NaN


def test_normalisation_is_cached_by_cache_dataset(rng):
    data = [{"image": rng.normal(0, 500, (1, 8, 8, 8)).astype(np.float32)} for _ in range(2)]
    pipeline = Compose(
        [
            NormalizeCTd(["image"], clip_low=-100, clip_high=200, mean=50, std=75),
            ZScoreNonzerod(["image"]),
            RandGaussianNoised(["image"], prob=1.0),
        ]
    )
    dataset = CacheDataset(data, pipeline, progress=False)
    cached = dataset._cache[0]["image"]
    expected = zscore_nonzero(normalize_ct(data[0]["image"], -100, 200, 50, 75), channel_wise=True)
    np.testing.assert_allclose(np.asarray(cached), expected, atol=1e-5)
    assert not torch.equal(
        torch.as_tensor(dataset[0]["image"]), torch.as_tensor(cached)
    )  # noise after the cache
