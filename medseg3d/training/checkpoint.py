"""Training checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, the iteration, the
best validation score and the torch RNG states. Patch sampling and augmentation draw from RNGs
seeded by ``(seed, sample index)``, so they need no saved state: a resumed run draws exactly the
patches the uninterrupted run would have drawn. Loading uses ``weights_only=True``: a checkpoint
can hold tensors and plain containers, never code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from medseg3d.errors import CheckpointError
from medseg3d.io.atomic import atomic_path

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "medseg3d-checkpoint-v1"


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, **state: Any) -> Path:
    """Write ``state`` (plus the format tag and RNG states) to ``path`` atomically."""
    payload = {"format": CHECKPOINT_FORMAT, "rng": rng_state(), **state}
    with atomic_path(path) as temp:
        torch.save(payload, temp)
    logger.debug("checkpoint written: %s (iteration %s)", path, state.get("iteration"))
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; refuse anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint not found; start without --resume", path=path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unpickling failure means: not ours
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"not a readable medseg3d checkpoint ({first_line[:200]}); it was not executed", path=path
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"not a medseg3d training checkpoint ({CHECKPOINT_FORMAT})", path=path)
    return payload
