"""Validation during training: sliding-window prediction of whole validation cases and Dice.

Cases are validated on the preprocessed grid (training spacing and orientation), as nnU-Net's
"pseudo Dice" — cheap, and the score that picks ``best.pt``. The full evaluation on the
original grid is ``medseg3d evaluate``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import nn

from medseg3d.data.cache import load_cached_case
from medseg3d.inference.sliding_window import sliding_window_inference
from medseg3d.metrics.tensor import dice_per_class


def make_validator(
    cache_folder: str | os.PathLike,
    case_ids: Sequence[str],
    *,
    patch_size: Sequence[int],
    labels: dict[str, int],
    device: torch.device,
    overlap: float = 0.5,
    batch_size: int = 2,
):
    """``validator(model) -> {"dice": mean foreground Dice, "dice/<label>": ...}``."""
    names = {value: name for name, value in labels.items()}
    num_classes = max(labels.values()) + 1
    foreground = [value for value in sorted(names) if value != 0]

    def validator(model: nn.Module) -> dict[str, float]:
        totals = torch.zeros(num_classes, dtype=torch.float64)
        for case_id in case_ids:
            case = load_cached_case(cache_folder, case_id)
            image = torch.from_numpy(case.image[None].astype("float32"))
            predicted = sliding_window_inference(
                image,
                model,
                patch_size,
                overlap=overlap,
                batch_size=batch_size,
                output="labels",
                compute_device=device,
                device="cpu",
            )
            truth = torch.from_numpy(case.label[None].astype("int64"))
            totals += dice_per_class(predicted.long(), truth, num_classes).double()
        dice = totals / max(1, len(case_ids))
        scores = {f"dice/{names[value]}": float(dice[value]) for value in foreground}
        scores["dice"] = float(dice[foreground].mean()) if foreground else float("nan")
        return scores

    return validator
