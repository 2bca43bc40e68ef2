"""Foreground-oversampled patch sampling that reads only the patch (memmaps welcome).

nnU-Net's rule: a share ``foreground_probability`` of patches is centred on a random voxel of a
random class present in the case; the others are placed uniformly. Volumes smaller than the patch
are padded (the patch may start before 0 or end after the volume).

* :func:`class_locations` precomputes, once per case, up to ``max_per_class`` voxel positions
  of each foreground class (store them with the preprocessed case);
* :func:`sample_patch_bbox` draws a box from a shape and those locations (or a label map);
* :func:`crop_patch` reads the box from an array or memmap, padding what lies outside.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.transforms import MapTransform, Randomizable

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.transforms.convert import like_input
from medseg3d.transforms.invertible import CropInverse
from medseg3d.transforms.spatial import crop_map, crop_or_pad

Box = tuple[tuple[int, int], ...]


def class_locations(
    label,
    classes: Sequence[int] | None = None,
    *,
    max_per_class: int = 10000,
    min_fraction: float = 0.0,
    rng: np.random.RandomState | np.random.Generator | None = None,
) -> dict[int, np.ndarray]:
    """Voxel positions ``(N, D)`` (int64) of each class > 0 in ``label`` ``(*spatial)`` or ``(1, *spatial)``.

    At most ``max_per_class`` positions per class but at least ``min_fraction`` of its voxels
    (nnU-Net keeps 10,000 and 1 %), drawn without replacement (seeded by ``rng``) and kept in
    array order.
    """
    array = np.asarray(label)
    rng = np.random.RandomState(0) if rng is None else rng
    values = np.unique(array) if classes is None else np.asarray(classes)
    locations = {}
    for value in values:
        if value <= 0:
            continue
        positions = np.argwhere(array == value)
        count = min(len(positions), max(max_per_class, int(np.ceil(len(positions) * min_fraction))))
        if count < len(positions):
            positions = positions[np.sort(rng.choice(len(positions), size=count, replace=False))]
        locations[int(value)] = positions.astype(np.int64)
    return locations


def sample_patch_bbox(
    shape: Sequence[int],
    patch_size: Sequence[int],
    label_or_class_locations: Any = None,
    foreground_probability: float = 0.33,
    rng: np.random.RandomState | None = None,
) -> Box:
    """A patch box ``((start, stop), ...)`` per spatial axis, in voxels; may extend past the volume.

    ``label_or_class_locations``: a label map (``(*shape)`` or ``(1, *shape)``), the output of
    :func:`class_locations` (positions may carry a leading channel coordinate, which is dropped),
    or None for uniform sampling only.
    """
    shape = tuple(int(n) for n in shape)
    patch = tuple(int(n) for n in patch_size)
    if len(shape) != len(patch):
        raise ShapeError(
            f"patch_size {patch} has {len(patch)} dims but the volume has shape {shape}"
        )
    if not 0.0 <= foreground_probability <= 1.0:
        raise ConfigError(f"foreground_probability must be in [0, 1], got {foreground_probability}")
    rng = np.random.RandomState() if rng is None else rng
    need = [max(0, p - n) for p, n in zip(patch, shape)]
    low = [-(k // 2) for k in need]
    high = [n + k // 2 + k % 2 - p for n, k, p in zip(shape, need, patch)]
    start = None
    if label_or_class_locations is not None and rng.uniform() < foreground_probability:
        locations = label_or_class_locations
        if not isinstance(locations, Mapping):
            locations = class_locations(label_or_class_locations, rng=rng, max_per_class=1000)
        present = [value for value, where in locations.items() if len(where)]
        if present:
            where = np.asarray(locations[present[rng.randint(len(present))]])
            centre = where[rng.randint(len(where))][-len(shape) :]
            start = [
                int(np.clip(c - p // 2, lo, hi)) for c, p, lo, hi in zip(centre, patch, low, high)
            ]
    if start is None:
        start = [int(rng.randint(lo, hi + 1)) for lo, hi in zip(low, high)]
    return tuple((s, s + p) for s, p in zip(start, patch))


def crop_patch(array, bbox: Box, *, value: float = 0.0) -> torch.Tensor:
    """The box of ``array`` ``(C, *spatial)`` (numpy, memmap or tensor) as a tensor, padded with ``value``."""
    start = [s for s, _ in bbox]
    size = [e - s for s, e in bbox]
    return crop_or_pad(array, start, size, value=value)


class RandForegroundPatchd(Randomizable, MapTransform, CropInverse):
    """Crop every key to one foreground-oversampled patch of ``patch_size`` voxels.

    The label under ``label_key`` (or precomputed positions under ``locations_key``, see
    :func:`class_locations`) picks the centre. Arrays may be numpy memmaps: only the patch is
    read. ``pad_value`` (a value or one per key) fills what lies outside the volume.
    ``inverse`` (MONAI's ``Invertd``) puts a patch back at its place, zeros around it.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        patch_size: Sequence[int],
        *,
        label_key: Hashable = "label",
        foreground_probability: float = 0.33,
        locations_key: Hashable = "class_locations",
        pad_value: float | Sequence[float] = 0.0,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self.patch_size = tuple(int(n) for n in patch_size)
        self.label_key = label_key
        self.foreground_probability = foreground_probability
        self.locations_key = locations_key
        values = [pad_value] * len(self.keys) if np.isscalar(pad_value) else list(pad_value)
        self.pad_values = dict(zip(self.keys, values))
        self.bbox: Box | None = None

    def randomize(self, data: Mapping[Hashable, Any]) -> None:
        first = next(iter(self.key_iterator(data)))
        shape = tuple(data[first].shape[1:])
        guide = data.get(self.locations_key)
        if guide is None:
            guide = data.get(self.label_key)
        self.bbox = sample_patch_bbox(
            shape, self.patch_size, guide, self.foreground_probability, self.R
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize(d)
        for key in self.key_iterator(d):
            value = d[key]
            plain = value.as_tensor() if hasattr(value, "as_tensor") else value
            patch = crop_patch(plain, self.bbox, value=self.pad_values[key])
            start = [s for s, _ in self.bbox]
            d[key] = self.record_crop(
                like_input(patch, value, crop_map(start)), start, value.shape[1:]
            )
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.undo_crop(d[key])
        return d
