"""Deterministic k-fold cross-validation splits by case id.

The split depends only on the *set* of case ids and the seed: ids are sorted before a seeded
shuffle, so listing order, file-system order or a re-run never change which case validates in
which fold. The JSON form is nnU-Net's ``splits_final.json``: ``[{"train": [...], "val": [...]}, ...]``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np

from medseg3d.errors import ConfigError, DatasetError
from medseg3d.io.atomic import atomic_write_text

DEFAULT_SEED = 12345


def kfold_splits(
    case_ids: Sequence[str], num_folds: int = 5, seed: int = DEFAULT_SEED
) -> list[dict[str, list[str]]]:
    """``num_folds`` folds ``[{"train": [...], "val": [...]}, ...]``; every case validates once.

    Fold sizes differ by at most one case; each list is sorted.
    """
    ids = sorted(set(map(str, case_ids)))
    if len(ids) != len(case_ids):
        raise ConfigError("case ids repeat; every case needs a unique id")
    if num_folds < 2:
        raise ConfigError(
            f"num_folds must be >= 2, got {num_folds}; use fold='all' to train on every case"
        )
    if len(ids) < num_folds:
        raise ConfigError(
            f"{len(ids)} cases cannot make {num_folds} folds; lower num_folds to at most {len(ids)}"
        )
    order = np.random.RandomState(seed).permutation(len(ids))
    folds = np.array_split(order, num_folds)
    splits = []
    for fold in folds:
        val = sorted(ids[i] for i in fold)
        held = set(val)
        splits.append({"train": [i for i in ids if i not in held], "val": val})
    return splits


def train_val_split(
    case_ids: Sequence[str],
    fold: int | str = 0,
    num_folds: int = 5,
    seed: int = DEFAULT_SEED,
) -> tuple[list[str], list[str]]:
    """``(train_ids, val_ids)`` of ``fold``; ``fold="all"`` trains and validates on every case."""
    if fold == "all":
        ids = sorted(map(str, case_ids))
        return ids, list(ids)
    try:
        fold = int(fold)
    except (TypeError, ValueError):
        raise ConfigError(
            f"fold must be an integer in [0, {num_folds}) or 'all', got {fold!r}"
        ) from None
    if not 0 <= fold < num_folds:
        raise ConfigError(f"fold must be in [0, {num_folds}) or 'all', got {fold}")
    split = kfold_splits(case_ids, num_folds, seed)[fold]
    return split["train"], split["val"]


def save_splits(splits: list[dict[str, list[str]]], path: str | os.PathLike) -> None:
    """Write splits as JSON (nnU-Net ``splits_final.json`` form), atomically."""
    atomic_write_text(path, json.dumps(splits, indent=2) + "\n")


def load_splits(
    path: str | os.PathLike, case_ids: Sequence[str] | None = None
) -> list[dict[str, list[str]]]:
    """Read splits written by :func:`save_splits` (or by nnU-Net); checks ids against ``case_ids``."""
    try:
        with open(path) as handle:
            splits = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot read the splits file ({error})", path=path) from error
    if not isinstance(splits, list) or not all(
        isinstance(s, dict) and isinstance(s.get("train"), list) and isinstance(s.get("val"), list)
        for s in splits
    ):
        raise DatasetError('splits must be a list of {"train": [...], "val": [...]}', path=path)
    if case_ids is not None:
        known = set(map(str, case_ids))
        unknown = sorted({i for s in splits for i in s["train"] + s["val"]} - known)
        if unknown:
            raise DatasetError(
                f"splits name cases not in the dataset: {unknown[:10]}; regenerate the splits",
                path=path,
            )
    return splits
