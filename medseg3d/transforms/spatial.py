"""Voxel-exact spatial transforms (no resampling): mirroring, 90-degree rotations, crop/pad.

Like :mod:`medseg3d.transforms.intensity`, each random transform is a settings object with
``sample(rng, shape)`` and a deterministic ``apply(x, params)`` on ``(C, *spatial)`` tensors of
any dtype (labels included: values are only moved, never mixed), plus
``voxel_map(params, shape)``: the ``(D+1, D+1)`` output-voxel -> input-voxel matrix used to keep a
``MetaTensor`` 's affine right, and ``inverse_params(params)``: the params that undo ``params``
exactly (what MONAI's ``inverse`` applies).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medseg3d.errors import ConfigError


@dataclass
class Flip:
    """Mirror each of ``axes`` (spatial axis indices; None = all) with probability ``axis_prob``."""

    axes: Sequence[int] | None = None
    axis_prob: float = 0.5

    def sample(self, rng, shape):
        axes = range(len(shape) - 1) if self.axes is None else self.axes
        return tuple(int(a) for a in axes if rng.uniform() < self.axis_prob)

    def apply(self, x, params):
        return torch.flip(x, [a + 1 for a in params]) if params else x

    def inverse_params(self, params):
        return tuple(int(a) for a in params)  # a mirror is its own inverse

    def voxel_map(self, params, shape):
        spatial = shape[1:]
        mapping = np.eye(len(spatial) + 1)
        for axis in params:
            mapping[axis, axis] = -1
            mapping[axis, -1] = spatial[axis] - 1
        return mapping


@dataclass
class Rot90:
    """Rotate by ``k * 90`` degrees in a random plane of ``axes`` pairs (None = all pairs).

    Planes whose two sizes differ only get k in {0, 2}, so the patch shape never changes.
    """

    axes: Sequence[Sequence[int]] | None = None
    max_k: int = 3

    def sample(self, rng, shape):
        spatial = shape[1:]
        planes = self.axes or [
            (i, j) for i in range(len(spatial)) for j in range(i + 1, len(spatial))
        ]
        i, j = planes[rng.randint(len(planes))]
        k = int(rng.randint(0, self.max_k + 1))
        if spatial[i] != spatial[j]:
            k = 2 if k % 2 else k  # keep the shape: 1 -> 2, 3 -> 2
        return k % 4, (int(i), int(j))

    def apply(self, x, params):
        k, (i, j) = params
        return torch.rot90(x, k, (i + 1, j + 1)) if k else x

    def inverse_params(self, params):
        k, (i, j) = params
        return (4 - int(k)) % 4, (int(i), int(j))

    def voxel_map(self, params, shape):
        k, (i, j) = params
        spatial = shape[1:]
        index_i, index_j = torch.meshgrid(
            torch.arange(spatial[i]), torch.arange(spatial[j]), indexing="ij"
        )
        rotated_i = torch.rot90(index_i, k, (0, 1)).double()
        rotated_j = torch.rot90(index_j, k, (0, 1)).double()
        mapping = np.eye(len(spatial) + 1)
        for row, rotated in ((i, rotated_i), (j, rotated_j)):
            origin = float(rotated[0, 0])
            step_u = float(rotated[1, 0] - rotated[0, 0]) if rotated.shape[0] > 1 else 0.0
            step_v = float(rotated[0, 1] - rotated[0, 0]) if rotated.shape[1] > 1 else 0.0
            mapping[row, i], mapping[row, j], mapping[row, -1] = step_u, step_v, origin
        return mapping


def crop_or_pad(
    x: torch.Tensor,
    start: Sequence[int],
    size: Sequence[int],
    *,
    value: float = 0.0,
) -> torch.Tensor:
    """The box ``[start, start + size)`` of ``x`` ``(C, *spatial)``, padded with ``value`` outside.

    ``start`` may be negative and the box may pass the end: only the part inside ``x`` is read,
    so ``x`` can be a numpy memmap (it is converted after slicing).
    """
    spatial = x.shape[1:]
    if len(start) != len(spatial) or len(size) != len(spatial):
        raise ConfigError(
            f"crop box of {len(size)} dims for an array of {len(spatial)} spatial dims"
        )
    lows = [min(max(0, s), n) for s, n in zip(start, spatial)]
    highs = [max(low, min(n, s + w)) for low, s, w, n in zip(lows, start, size, spatial)]
    region = x[(slice(None), *(slice(low, high) for low, high in zip(lows, highs)))]
    if not isinstance(region, torch.Tensor):
        region = torch.from_numpy(np.ascontiguousarray(region))
    pad = []
    for s, w, low, high in reversed(list(zip(start, size, lows, highs))):
        before = min(w, max(0, -s))
        pad += [before, w - before - (high - low)]
    if any(pad):
        if region.dtype == torch.bool:
            region = region.to(torch.uint8)
        region = F.pad(region, pad, value=value)
    return region


def uncrop(x: torch.Tensor, start: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """Undo a crop of ``x`` ``(C, *spatial)`` taken at ``start`` from a volume of ``shape``:
    ``x`` back at its place, zeros around it (a crop of a padded box drops the padding)."""
    return crop_or_pad(x, [-int(s) for s in start], [int(n) for n in shape])


def center_start(shape: Sequence[int], size: Sequence[int]) -> tuple[int, ...]:
    """The start of a centred box of ``size`` in ``shape`` (matches the elastic grid's centring)."""
    return tuple((int(n) - int(w)) // 2 for n, w in zip(shape, size))


def crop_map(start: Sequence[int]) -> np.ndarray:
    """The voxel map of a crop starting at ``start``."""
    mapping = np.eye(len(start) + 1)
    mapping[:-1, -1] = start
    return mapping
