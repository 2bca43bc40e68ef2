from __future__ import annotations

from pathlib import Path

import pytest

from medseg3d.data import make_ellipsoid_case, write_dataset

LABELS = {"background": 0, "small": 1, "large": 2}


def make_ellipsoid_dataset(folder: Path, cases: int = 4, shape=(32, 32, 32)) -> Path:
    data = {f"case{i}": make_ellipsoid_case(shape, seed=i, num_classes=2) for i in range(cases)}
    return write_dataset(folder, data, LABELS, channel_names=("MR",))


@pytest.fixture(scope="session")
def ellipsoid_dataset(tmp_path_factory) -> Path:
    """Four 32^3 cases of two bright ellipsoid classes in noise (MSD layout)."""
    return make_ellipsoid_dataset(tmp_path_factory.mktemp("ellipsoids"))


#: A tiny network and short schedule shared by the training tests.
TINY = [
    "model.features=4",
    "model.depth=2",
    "data.num_workers=0",
    "data.num_folds=2",
    "training.validate_every=1000",
    "training.checkpoint_every=2",
    "training.log_every=1",
]
