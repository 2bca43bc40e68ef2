"""Per-channel intensity normalisation as a plan describes it (see :class:`~medseg3d.data.plan.Plan`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medseg3d.errors import ConfigError


def normalize_channel(array: np.ndarray, entry: dict[str, Any]) -> np.ndarray:
    """Normalise one channel ``(*spatial)``; returns float32 (``ct`` and ``zscore_nonzero`` are
    :mod:`medseg3d.transforms.normalize`'s functions).

    * ``ct``: clip to ``clip`` (HU, the foreground 0.5/99.5 percentiles), then ``(x - mean) / std``
      with the foreground mean/std (nnU-Net's CT normalisation);
    * ``zscore_nonzero``: z-score over the non-zero voxels; zero voxels stay 0 (MR brain; an
      all-zero image is z-scored as a whole);
    * ``zscore``: z-score over the whole image;  ``rescale``: min-max to [0, 1];  ``none``.
    """
    scheme = entry.get("scheme")
    data = np.asarray(array, dtype=np.float32)
    if scheme in ("ct", "zscore_nonzero"):
        # one implementation of the maths in the project (imported here: it pulls in torch/MONAI)
        from medseg3d.transforms.normalize import normalize_ct, zscore_nonzero

        if scheme == "ct":
            low, high = entry["clip"]
            return normalize_ct(
                data, float(low), float(high), float(entry["mean"]), float(entry["std"])
            )
        return zscore_nonzero(data)
    if scheme == "zscore":
        return (data - np.float32(data.mean(dtype=np.float64))) / np.float32(
            max(float(data.std(dtype=np.float64)), 1e-8)
        )
    if scheme == "rescale":
        low, high = float(data.min()), float(data.max())
        return (data - low) / np.float32(max(high - low, 1e-8))
    if scheme == "none":
        return data.copy()
    raise ConfigError(
        f"unknown normalization scheme {scheme!r}; use ct, zscore_nonzero, zscore, rescale or none"
    )
