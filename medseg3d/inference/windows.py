"""The numerical core of sliding-window inference: where windows go, how they are weighted,
and when a region of the output is complete.

Everything here is plain arithmetic on sizes (voxels) plus one small tensor (the importance map),
so it is easy to test against a hand-computed case or MONAI. Devices, batching, mirroring and
progress live in :mod:`medseg3d.inference.sliding_window`; accumulation in :mod:`.stitching`.

Window placement (as nnU-Net's ``compute_steps_for_sliding_window``): along each axis of size
``S`` (after padding to at least the patch ``P``), ``n = ceil((S - P) / step) + 1`` windows with
``step = max(1, int(P * (1 - overlap)))`` (MONAI's interval, so the window count equals MONAI's),
spread evenly so the first starts at 0 and the last ends at ``S``; none hangs outside the image.

Cells: the window edges cut the two slowest axes of the processing order into intervals; a
*cell* is a product of such intervals (whole along the remaining axis). A cell is complete, and
can be turned into probabilities or labels and freed, as soon as the last window touching it, in
the processing order, has been added. That order is lexicographic, slowest along the axis
:func:`stream_order` picks (the first spatial axis unless another one is relatively longer), so
the live cells form a band of about ``P_a - step_a`` planes across that axis ``a`` plus a strip
of ``P_a x P_b`` voxels across the rest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from medseg3d.errors import ConfigError, ShapeError

BLEND_MODES = ("gaussian", "constant")
#: Smallest importance weight (as MONAI): keeps every voxel's total weight positive.
MIN_WEIGHT = 1e-3


def as_tuple(value: float | Sequence[float], spatial_dims: int, name: str) -> tuple:
    """``value`` repeated ``spatial_dims`` times, or the sequence itself if it has that length."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != spatial_dims:
            raise ShapeError(
                f"{name} has {len(value)} entries for a {spatial_dims}D image; "
                f"give one value or {spatial_dims}"
            )
        return tuple(value)
    return (value,) * spatial_dims


def resolve_patch_size(
    patch_size: int | Sequence[int | None], image_size: Sequence[int]
) -> tuple[int, ...]:
    """Patch size per axis in voxels; ``None`` or a value <= 0 means "the whole axis" (as MONAI)."""
    patch = as_tuple(patch_size, len(image_size), "patch_size")
    resolved = tuple(int(s) if p is None or p <= 0 else int(p) for p, s in zip(patch, image_size))
    return resolved


def window_step(patch: int, overlap: float) -> int:
    """The target distance between window starts: ``max(1, int(patch * (1 - overlap)))`` voxels."""
    if not 0.0 <= float(overlap) < 1.0:
        raise ConfigError(f"overlap must be in [0, 1), got {overlap!r}")
    return max(1, int(patch * (1.0 - float(overlap))))


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start voxels of the windows along one axis of ``size >= patch`` voxels, evenly spaced.

    >>> window_starts(70, 32, 0.5)
    [0, 13, 25, 38]
    """
    if size < patch:
        raise ShapeError(f"axis of {size} voxels is smaller than the patch ({patch}); pad it first")
    step = window_step(patch, overlap)
    count = math.ceil((size - patch) / step) + 1
    if count == 1:
        return [0]
    actual = (size - patch) / (count - 1)
    return [int(round(actual * i)) for i in range(count)]


def window_grid(
    image_size: Sequence[int], patch_size: Sequence[int], overlap: float | Sequence[float]
) -> list[list[int]]:
    """Per-axis window starts for a (padded) image; the windows are their Cartesian product."""
    overlaps = as_tuple(overlap, len(image_size), "overlap")
    return [window_starts(s, p, o) for s, p, o in zip(image_size, patch_size, overlaps)]


def stream_order(
    image_size: Sequence[int], patch_size: Sequence[int], starts: Sequence[Sequence[int]]
) -> list[int]:
    """Spatial axes from slowest to fastest in the window processing order.

    The live cells form a band of ``P_a - step_a`` planes across the slowest axis ``a``, a
    fraction ``(P_a - step_a) / S_a`` of the image, so axes with the smallest fraction go first
    (ties keep the natural order: the first spatial axis leads for a cubic image and patch). An
    axis with a single window never completes early and goes last.
    """

    def band_fraction(axis: int) -> float:
        if len(starts[axis]) < 2:
            return 1.0
        step = starts[axis][1] - starts[axis][0]
        return (patch_size[axis] - step) / image_size[axis]

    return sorted(range(len(image_size)), key=band_fraction)


def padding_for(image_size: Sequence[int], patch_size: Sequence[int]) -> list[tuple[int, int]]:
    """(before, after) padding per axis so every axis is at least the patch; centred, as MONAI."""
    pads = []
    for size, patch in zip(image_size, patch_size):
        missing = max(patch - size, 0)
        pads.append((missing // 2, missing - missing // 2))
    return pads


@lru_cache(maxsize=16)
def _importance_map_cpu(patch_size: tuple[int, ...], mode: str, sigma_scale: tuple) -> torch.Tensor:
    if mode == "constant":
        return torch.ones(patch_size)
    weights = torch.ones(())
    for patch, scale in zip(patch_size, sigma_scale):
        sigma = patch * float(scale)
        x = torch.arange(patch, dtype=torch.float32) - (patch - 1) / 2.0
        profile = torch.exp(x**2 / (-2.0 * sigma**2))
        weights = weights.unsqueeze(-1) * profile
    return weights.clamp_(min=max(float(weights.min()), MIN_WEIGHT))


def importance_map(
    patch_size: Sequence[int],
    mode: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Weight of each voxel of a window's prediction, shape ``patch_size``, float32, max 1.

    ``"gaussian"``: a separable Gaussian with sigma ``sigma_scale * patch`` voxels per axis,
    centred on the window, clamped below at 1e-3 (identical to MONAI's ``compute_importance_map``);
    ``"constant"``: ones. Computed once per patch size (cached); do not modify the result in place.
    """
    if mode not in BLEND_MODES:
        raise ConfigError(f"unknown mode {mode!r}; choose one of: {', '.join(BLEND_MODES)}")
    scales = tuple(float(s) for s in as_tuple(sigma_scale, len(patch_size), "sigma_scale"))
    if mode == "gaussian" and min(scales) <= 0:
        raise ConfigError(f"sigma_scale must be positive, got {sigma_scale!r}")
    return _importance_map_cpu(tuple(int(p) for p in patch_size), mode, scales).to(device)


@dataclass(frozen=True)
class CellPlan:
    """How the windows of one (padded) image cut it into cells.

    The ``split_axes`` (the two slowest in the processing order) are cut at every window edge;
    the others stay whole (a cell spans them entirely, which keeps the number of cells per window
    small at about the same peak memory). Per axis ``d``: ``edges[d]`` are the sorted cell boundaries (0 ... size);
    ``last[d][j]`` is the index of the last window start touching cell interval ``j``;
    ``pieces[d][k]`` lists, for window start ``k``, ``(j, slice in cell j, slice in window)``.
    """

    edges: tuple[tuple[int, ...], ...]
    last: tuple[tuple[int, ...], ...]
    pieces: tuple[tuple[tuple[tuple[int, slice, slice], ...], ...], ...]

    @classmethod
    def build(
        cls,
        starts: Sequence[Sequence[int]],
        patch_size: Sequence[int],
        split_axes: Sequence[int] = (0, 1),
    ) -> CellPlan:
        edges, last, pieces = [], [], []
        for axis, (axis_starts, patch) in enumerate(zip(starts, patch_size)):
            size = axis_starts[-1] + patch
            if axis in split_axes:
                cuts = sorted({*axis_starts, *(s + patch for s in axis_starts)})
            else:
                cuts = [0, size]
            intervals = list(zip(cuts[:-1], cuts[1:]))
            touching = [
                [k for k, s in enumerate(axis_starts) if s < hi and lo < s + patch]
                for lo, hi in intervals
            ]
            axis_pieces = []
            for s in axis_starts:
                axis_pieces.append(
                    tuple(
                        (
                            j,
                            slice(max(lo, s) - lo, min(hi, s + patch) - lo),
                            slice(max(lo, s) - s, min(hi, s + patch) - s),
                        )
                        for j, (lo, hi) in enumerate(intervals)
                        if s < hi and lo < s + patch
                    )
                )
            edges.append(tuple(cuts))
            last.append(tuple(t[-1] for t in touching))
            pieces.append(tuple(axis_pieces))
        return cls(tuple(edges), tuple(last), tuple(pieces))

    def interval(self, axis: int, cell: int) -> tuple[int, int]:
        """Voxel range ``[start, stop)`` of cell interval ``cell`` along ``axis``."""
        return self.edges[axis][cell], self.edges[axis][cell + 1]
