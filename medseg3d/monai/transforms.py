"""``PlanNormalized``: a model folder's per-channel intensity normalisation as a MONAI transform.

Applies exactly :func:`medseg3d.data.normalize_channel` (what ``medseg3d train`` and ``medseg3d
predict`` apply) to each channel of ``(C, *spatial)`` images. Deterministic, so a
``CacheDataset`` caches its result; ``MetaTensor`` metadata and the record of earlier invertible
transforms are kept, so ``Invertd`` can still undo ``Orientationd``/``Spacingd`` afterwards.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Transform

from medseg3d.data.normalization import normalize_channel
from medseg3d.errors import ConfigError, ShapeError
from medseg3d.transforms.convert import like_input


class PlanNormalize(Transform):
    """Normalise ``(C, *spatial)`` channel by channel; ``normalization`` is ``plan.normalization``
    (one dict per channel, e.g. ``{"scheme": "ct", "clip": [lo, hi], "mean": m, "std": s}``).
    Returns float32 torch (a ``MetaTensor`` when given one)."""

    def __init__(self, normalization: Sequence[Mapping[str, Any]]):
        self.normalization = [dict(entry) for entry in normalization]
        if not self.normalization:
            raise ConfigError("normalization lists one entry per input channel; got none")
        for entry in self.normalization:
            normalize_channel(np.zeros(2, dtype=np.float32), entry)  # validates the scheme

    def __call__(self, img: Any) -> torch.Tensor:
        plain = img.as_tensor() if hasattr(img, "as_tensor") else img
        array = (
            plain.detach().cpu().numpy() if isinstance(plain, torch.Tensor) else np.asarray(plain)
        )
        if array.shape[0] != len(self.normalization):
            raise ShapeError(
                f"image has {array.shape[0]} channel(s) (shape {tuple(array.shape)}) but the plan "
                f"normalises {len(self.normalization)}; load it channel-first "
                "(EnsureChannelFirstd) with one channel per model input"
            )
        out = np.stack(
            [normalize_channel(channel, entry) for channel, entry in zip(array, self.normalization)]
        )
        return like_input(torch.from_numpy(out), img)


class PlanNormalized(MapTransform):
    """Dictionary version of :class:`PlanNormalize`."""

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        normalization: Sequence[Mapping[str, Any]],
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.transform = PlanNormalize(normalization)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
