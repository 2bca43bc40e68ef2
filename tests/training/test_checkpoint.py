from __future__ import annotations

import pickle

import pytest
import torch

from medseg3d.errors import CheckpointError
from medseg3d.training.checkpoint import load_checkpoint, save_checkpoint


def test_round_trip_keeps_state_and_rng(tmp_path):
    model = torch.nn.Linear(3, 2)
    path = save_checkpoint(tmp_path / "last.pt", iteration=7, model=model.state_dict(), history=[{"loss": 0.5}])
    expected = torch.rand(3)
    payload = load_checkpoint(path)
    assert payload["iteration"] == 7 and payload["history"] == [{"loss": 0.5}]
    torch.set_rng_state(payload["rng"]["torch"])
    # the state saved before drawing `expected` reproduces it
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(payload["model"]["weight"], model.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary left behind


class _Exploit:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_a_pickle_with_code_is_refused_and_never_executed(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "medseg3d-checkpoint-v1", "x": _Exploit(str(target))}))
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not target.exists()


def test_missing_or_foreign_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a medseg3d training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
