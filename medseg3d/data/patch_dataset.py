"""Random training patches from the preprocessed cache, with foreground oversampling.

Sample i of epoch e draws from ``numpy.random.default_rng([seed, epoch, i])``: the patches are
the same whatever the number of DataLoader workers and whichever worker draws them, and a
resumed run sees the same patches (call :meth:`PatchDataset.set_epoch` each epoch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from medseg3d.data.cache import cached_case_ids, load_cached_case
from medseg3d.errors import ConfigError


def choose_patch_start(
    shape: Sequence[int],
    patch_size: Sequence[int],
    rng: np.random.Generator,
    centre: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Start (voxels, may be negative when the patch is larger than the image) of a patch that
    lies inside the image where it can, centred near ``centre`` if given, else uniform."""
    start = []
    for axis, (n, p) in enumerate(zip(shape, patch_size)):
        low, high = min(0, n - p), max(0, n - p)  # a too-small image is padded on both sides
        if n < p:
            low = high = (n - p) // 2
        if centre is None:
            start.append(int(rng.integers(low, high + 1)))
        else:
            start.append(int(np.clip(int(centre[axis]) - p // 2, low, high)))
    return tuple(start)


def crop_patch(
    array: np.ndarray, start: Sequence[int], patch_size: Sequence[int], fill: float = 0
) -> np.ndarray:
    """``array[:, start:start+patch]`` for a ``(C, *spatial)`` array, padding outside with ``fill``."""
    spatial = array.shape[1:]
    out = np.full((array.shape[0], *patch_size), fill, dtype=array.dtype)
    source, target = [slice(None)], [slice(None)]
    for s, p, n in zip(start, patch_size, spatial):
        lo, hi = max(s, 0), min(s + p, n)
        source.append(slice(lo, hi))
        target.append(slice(lo - s, hi - s))
    out[tuple(target)] = array[tuple(source)]
    return out


class PatchDataset(torch.utils.data.Dataset):
    """Random patches ``{"image": (C, *patch) float32, "label": (1, *patch) int64, "case_id"}``.

    Args:
        cache_folder: a folder written by :func:`~medseg3d.data.cache.build_cache`.
        patch_size: voxels per axis.
        case_ids: the cases to draw from (a fold's training ids); default all cached cases.
        samples_per_epoch: the dataset's length.
        foreground_fraction: share of patches centred on a foreground voxel (class chosen
            uniformly among those present in the case), as nnU-Net's oversampling (0.33).
        transform: optional callable applied to each sample dict (e.g. the augmentation
            pipeline from ``medseg3d.transforms``).
        seed: base of the per-sample random streams.
    """

    def __init__(
        self,
        cache_folder: str | os.PathLike,
        patch_size: Sequence[int],
        *,
        case_ids: Sequence[str] | None = None,
        samples_per_epoch: int = 250,
        foreground_fraction: float = 0.33,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        seed: int = 0,
    ):
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ConfigError(f"foreground_fraction must be in [0, 1], got {foreground_fraction}")
        if samples_per_epoch < 1:
            raise ConfigError(f"samples_per_epoch must be >= 1, got {samples_per_epoch}")
        self.cache_folder = cache_folder
        self.case_ids = list(case_ids) if case_ids is not None else cached_case_ids(cache_folder)
        if not self.case_ids:
            raise ConfigError("PatchDataset needs at least one case")
        self.patch_size = tuple(int(p) for p in patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.foreground_fraction = float(foreground_fraction)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self._cases: dict[str, Any] = {}

    def set_epoch(self, epoch: int) -> None:
        """Draw another set of patches (each epoch its own random streams)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _case(self, case_id: str):
        if case_id not in self._cases:  # memory maps are opened lazily, once per worker
            self._cases[case_id] = load_cached_case(self.cache_folder, case_id)
        return self._cases[case_id]

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        case = self._case(self.case_ids[int(rng.integers(len(self.case_ids)))])
        spatial = case.image.shape[1:]
        if len(self.patch_size) != len(spatial):
            raise ConfigError(
                f"patch_size {self.patch_size} has {len(self.patch_size)} axes, the data {len(spatial)}"
            )
        centre = None
        classes = [k for k, v in case.locations.items() if len(v)]
        if classes and rng.random() < self.foreground_fraction:
            locations = case.locations[classes[int(rng.integers(len(classes)))]]
            centre = locations[int(rng.integers(len(locations)))]
        start = choose_patch_start(spatial, self.patch_size, rng, centre)
        image = crop_patch(case.image, start, self.patch_size, fill=0.0)
        sample: dict[str, Any] = {"image": torch.from_numpy(image.astype(np.float32, copy=False))}
        if case.label is not None:
            label = crop_patch(case.label, start, self.patch_size, fill=0)
            sample["label"] = torch.from_numpy(label.astype(np.int64))
        sample["case_id"] = case.case_id
        if self.transform is not None:
            sample = self.transform(sample)
        return sample
