"""Shards: one deterministic part of a batch, for array jobs (Slurm ``--array``) and the like."""

from __future__ import annotations

import re
from collections.abc import Sequence

from medseg3d.batch.cases import BatchCase
from medseg3d.errors import ConfigError


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (0-based, like ``SLURM_ARRAY_TASK_ID`` with
    ``--array=0-<N-1>``)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if match is None:
        raise ConfigError(f"--shard {text!r} must look like I/N, e.g. 0/4 (shard 0 of 4)")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"--shard {text}: I must be between 0 and N-1 (shards are numbered from 0), N >= 1"
        )
    return index, count


def select_shard(cases: Sequence[BatchCase], index: int, count: int) -> list[BatchCase]:
    """Shard ``index`` of ``count``: the cases sorted by id, dealt round-robin. Every case is in
    exactly one shard, shard sizes differ by at most one, and the split depends only on the set
    of case ids (not on the order they were found or listed in)."""
    ordered = sorted(cases, key=lambda case: case.case_id)
    return ordered[index::count]
