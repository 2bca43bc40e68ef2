"""Intensity normalisation shared by preprocessing, training and prediction.

Pure and deterministic: the same input gives the same output at training and at prediction
time. Functions accept numpy arrays or torch tensors and return the same kind, float32:

* CT: :func:`normalize_ct` clips to dataset percentiles and z-scores with dataset statistics
  (:func:`ct_statistics` computes them from foreground voxels, as nnU-Net does);
* MRI and others: :func:`zscore_nonzero` z-scores each image inside its non-zero mask.

No MONAI here (prediction imports this module; MONAI costs seconds at start-up): the MONAI
transforms :class:`~medseg3d.transforms.normalize_monai.NormalizeCTd` and ``ZScoreNonzerod`` wrap these
functions as plain (not random) ``MapTransform`` s, so ``monai.data.CacheDataset`` caches them.
"""

from __future__ import annotations

import numpy as np
import torch

from medseg3d.errors import ConfigError

EPSILON = 1e-8


def normalize_ct(array, clip_low: float, clip_high: float, mean: float, std: float):
    """``(clip(array, clip_low, clip_high) - mean) / std`` as float32 (numpy in, numpy out)."""
    if clip_low > clip_high:
        raise ConfigError(f"CT normalisation: clip_low {clip_low} > clip_high {clip_high}")
    if not std > 0:
        raise ConfigError(
            f"CT normalisation: std must be > 0, got {std}; recompute the dataset statistics"
        )
    if isinstance(array, torch.Tensor):
        return (array.float().clamp(clip_low, clip_high) - mean) / std
    clipped = np.clip(np.asarray(array, dtype=np.float32), clip_low, clip_high)
    return ((clipped - np.float32(mean)) / np.float32(std)).astype(np.float32, copy=False)


def zscore_nonzero(array, mask=None, *, channel_wise: bool = False):
    """Z-score inside ``mask`` (default: ``array != 0``); voxels outside the mask become 0.

    ``channel_wise=True`` treats the first axis as channels ``(C, *spatial)`` and normalises
    each channel with its own mask and statistics. An empty mask falls back to the whole image.
    """
    if channel_wise:
        masks = [None] * len(array) if mask is None else list(mask)
        channels = [zscore_nonzero(a, m) for a, m in zip(array, masks)]
        return torch.stack(channels) if isinstance(array, torch.Tensor) else np.stack(channels)
    if isinstance(array, torch.Tensor):
        values = array.float()
        region = values != 0 if mask is None else torch.as_tensor(mask, device=values.device).bool()
        if not bool(region.any()):
            region = torch.ones_like(values, dtype=torch.bool)
        selected = values[region].double()
        mean, std = selected.mean(), selected.std(unbiased=False)
        out = ((values - mean.float()) / max(float(std), EPSILON)).float()
        return torch.where(region, out, torch.zeros_like(out))
    values = np.asarray(array, dtype=np.float32)
    region = values != 0 if mask is None else np.asarray(mask, dtype=bool)
    if not region.any():
        region = np.ones_like(values, dtype=bool)
    selected = values[region].astype(np.float64)
    mean, std = selected.mean(), selected.std()
    out = ((values - np.float32(mean)) / np.float32(max(std, EPSILON))).astype(np.float32)
    out[~region] = 0
    return out


def ct_statistics(
    foreground_values, low_percentile: float = 0.5, high_percentile: float = 99.5
) -> dict[str, float]:
    """Dataset statistics for :func:`normalize_ct` from intensities sampled in the foreground.

    Returns ``clip_low``/``clip_high`` (the percentiles) and ``mean``/``std`` of the clipped values.
    """
    values = np.asarray(foreground_values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ConfigError("CT statistics need at least one foreground voxel; check the labels")
    low, high = np.percentile(values, [low_percentile, high_percentile])
    clipped = np.clip(values, low, high)
    return {
        "clip_low": float(low),
        "clip_high": float(high),
        "mean": float(clipped.mean()),
        "std": float(max(clipped.std(), EPSILON)),
    }
