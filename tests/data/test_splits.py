"""Deterministic k-fold splits."""

from __future__ import annotations

import pytest

from medseg3d.data import kfold_splits, load_splits, save_splits, train_val_split
from medseg3d.errors import ConfigError, DatasetError

IDS = [f"case_{i:02d}" for i in range(11)]


def test_folds_partition_the_cases_and_do_not_depend_on_order():
    splits = kfold_splits(IDS, num_folds=5, seed=1)
    vals = [set(s["val"]) for s in splits]
    assert set().union(*vals) == set(IDS) and sum(map(len, vals)) == len(IDS)
    assert sorted(map(len, vals)) == [2, 2, 2, 2, 3]
    for split in splits:
        assert set(split["train"]).isdisjoint(split["val"])
        assert set(split["train"]) | set(split["val"]) == set(IDS)
    assert kfold_splits(list(reversed(IDS)), 5, seed=1) == splits
    assert kfold_splits(IDS, 5, seed=2) != splits


def test_train_val_split_and_all():
    train, val = train_val_split(IDS, fold=2, num_folds=5, seed=1)
    assert (train, val) == (kfold_splits(IDS, 5, 1)[2]["train"], kfold_splits(IDS, 5, 1)[2]["val"])
    assert train_val_split(IDS, fold="all") == (sorted(IDS), sorted(IDS))
    with pytest.raises(ConfigError, match="fold"):
        train_val_split(IDS, fold=5, num_folds=5)
    with pytest.raises(ConfigError, match="cannot make"):
        kfold_splits(IDS[:3], num_folds=5)


def test_save_and_load(tmp_path):
    splits = kfold_splits(IDS, 3)
    save_splits(splits, tmp_path / "splits.json")
    assert load_splits(tmp_path / "splits.json", IDS) == splits
    with pytest.raises(DatasetError, match="not in the dataset"):
        load_splits(tmp_path / "splits.json", IDS[:4])
