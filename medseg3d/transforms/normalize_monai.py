"""The intensity normalisations as MONAI transforms (deterministic, so cacheable).

:class:`NormalizeCT(d)` and :class:`ZScoreNonzero(d)` wrap :func:`~medseg3d.transforms.normalize.
normalize_ct` and :func:`~medseg3d.transforms.normalize.zscore_nonzero`; they are plain
``Transform`` s, so ``monai.data.CacheDataset`` caches their output and stops at the first random
transform after them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Transform

from medseg3d.transforms.convert import like_input, to_tensor
from medseg3d.transforms.normalize import normalize_ct, zscore_nonzero


class NormalizeCT(Transform):
    """Array version of :func:`normalize_ct` on ``(C, *spatial)``; returns float32 torch."""

    def __init__(self, clip_low: float, clip_high: float, mean: float, std: float):
        normalize_ct(np.zeros(1), clip_low, clip_high, mean, std)  # validates the settings
        self.settings = (clip_low, clip_high, mean, std)

    def __call__(self, img: Any) -> torch.Tensor:
        return like_input(normalize_ct(to_tensor(img), *self.settings), img)


class ZScoreNonzero(Transform):
    """Array version of :func:`zscore_nonzero`, channel-wise on ``(C, *spatial)``."""

    def __call__(self, img: Any) -> torch.Tensor:
        return like_input(zscore_nonzero(to_tensor(img), channel_wise=True), img)


class NormalizeCTd(MapTransform):
    """Dictionary version of :class:`NormalizeCT`."""

    def __init__(
        self,
        keys,
        clip_low: float,
        clip_high: float,
        mean: float,
        std: float,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.transform = NormalizeCT(clip_low, clip_high, mean, std)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d


class ZScoreNonzerod(MapTransform):
    """Dictionary version of :class:`ZScoreNonzero`."""

    def __init__(self, keys: Sequence[Hashable] | Hashable, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.transform = ZScoreNonzero()

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
