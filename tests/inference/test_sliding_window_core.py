"""The numerical core: window positions, importance map, cells (against MONAI and by hand)."""

from __future__ import annotations

import itertools

import pytest
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.inference.windows import (
    CellPlan,
    importance_map,
    padding_for,
    resolve_patch_size,
    stream_order,
    window_grid,
    window_starts,
)


@pytest.mark.parametrize("patch", [1, 7, 16, 32])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.8])
def test_windows_touch_both_borders_are_evenly_spaced_and_stay_inside(patch, overlap):
    for size in range(patch, patch + 70):
        starts = window_starts(size, patch, overlap)
        assert starts[0] == 0 and starts[-1] + patch == size
        assert all(0 <= s <= size - patch for s in starts)
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert not gaps or max(gaps) - min(gaps) <= 1  # evenly spaced up to rounding
        assert not gaps or max(gaps) <= max(1, int(patch * (1 - overlap)))  # never less overlap


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_window_count_equals_monai(overlap):
    for size in range(16, 120, 3):
        ours = window_starts(size, 16, overlap)
        interval = _get_scan_interval((size,), (16,), 1, (overlap,))
        monai = dense_patch_slices((size,), (16,), interval)
        assert len(ours) == len(monai), size


def test_windows_coincide_with_monai_when_size_is_patch_plus_steps():
    for k in range(5):
        size = 32 + 16 * k
        monai = [s[0].start for s in dense_patch_slices((size,), (32,), (16,))]
        assert window_starts(size, 32, 0.5) == monai


def test_window_grid_takes_an_overlap_per_axis():
    assert window_grid((70, 53), (32, 32), (0.5, 0.0)) == [[0, 13, 25, 38], [0, 21]]
    with pytest.raises(ShapeError):
        window_grid((70, 53), (32, 32), (0.5, 0.0, 0.1))
    with pytest.raises(ConfigError):
        window_starts(70, 32, 1.0)


def test_patch_size_none_or_nonpositive_means_whole_axis():
    assert resolve_patch_size((None, -1, 8), (10, 20, 30)) == (10, 20, 8)
    assert resolve_patch_size(16, (10, 20)) == (16, 16)
    with pytest.raises(ShapeError):
        resolve_patch_size((16, 16), (10, 20, 30))


def test_padding_is_centred_like_monai():
    assert padding_for((20, 9, 40), (32, 16, 32)) == [(6, 6), (3, 4), (0, 0)]


@pytest.mark.parametrize("patch", [(32, 32, 32), (15, 20, 9), (16, 7)])
@pytest.mark.parametrize("sigma", [0.125, (0.25, 0.1, 0.5)])
def test_gaussian_importance_map_equals_monai(patch, sigma):
    if isinstance(sigma, tuple):
        sigma = sigma[: len(patch)]
    ours = importance_map(patch, "gaussian", sigma)
    monai = compute_importance_map(patch, mode="gaussian", sigma_scale=sigma)
    assert ours.shape == patch and ours.dtype == torch.float32
    torch.testing.assert_close(ours, monai, rtol=1e-6, atol=1e-7)
    assert ours.min() > 0


def test_constant_importance_map_and_bad_mode():
    assert torch.equal(importance_map((4, 5), "constant"), torch.ones(4, 5))
    with pytest.raises(ConfigError, match="gaussian"):
        importance_map((4, 5), "cosine")


def test_cells_partition_the_image_and_know_their_last_window():
    size, patch = (70, 45, 30), (32, 16, 16)
    starts = window_grid(size, patch, 0.5)
    plan = CellPlan.build(starts, patch)
    assert plan.edges[2] == (0, 30)  # the last axis is not split
    for axis in range(3):
        edges = plan.edges[axis]
        assert edges[0] == 0 and edges[-1] == size[axis] and list(edges) == sorted(set(edges))
        for j in range(len(edges) - 1):
            lo, hi = plan.interval(axis, j)
            touching = [k for k, s in enumerate(starts[axis]) if s < hi and lo < s + patch[axis]]
            if axis < 2:  # split axes: a window covers a cell entirely or not at all
                assert all(
                    s <= lo and hi <= s + patch[axis]
                    for s in starts[axis][touching[0] : touching[-1] + 1]
                )
            assert plan.last[axis][j] == touching[-1]
        for k, s in enumerate(starts[axis]):
            covered = set()
            for j, in_cell, in_window in plan.pieces[axis][k]:
                lo, _ = plan.interval(axis, j)
                assert in_cell.stop - in_cell.start == in_window.stop - in_window.start
                assert lo + in_cell.start == s + in_window.start
                covered |= set(range(s + in_window.start, s + in_window.stop))
            assert covered == set(range(s, s + patch[axis]))
    # the lexicographically last window touching a cell is the per-axis last one
    windows = list(itertools.product(*(range(len(s)) for s in starts)))
    for cell in itertools.product(*(range(len(e) - 1) for e in plan.edges)):
        touching = [
            w
            for w in windows
            if all(c in [p[0] for p in plan.pieces[d][w[d]]] for d, c in enumerate(cell))
        ]
        assert touching[-1] == tuple(plan.last[d][c] for d, c in enumerate(cell))


def test_stream_order_leads_with_the_relatively_longest_axis():
    size, patch = (512, 512, 256), (96, 96, 96)
    assert stream_order(size, patch, window_grid(size, patch, 0.5)) == [0, 1, 2]
    size = (512, 512, 1000)  # whole-body CT: stream along z
    assert stream_order(size, patch, window_grid(size, patch, 0.5)) == [2, 0, 1]
    size = (40, 300, 16)  # one window along the last axis: it goes last
    assert stream_order(size, (16, 16, 16), window_grid(size, (16, 16, 16), 0.5)) == [1, 0, 2]
