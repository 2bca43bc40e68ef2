"""medseg3d.inference: bounded-memory sliding-window prediction.

``sliding_window_inference(inputs, predictor, patch_size, ...)`` segments ``(B, C, *spatial)``
volumes window by window and returns logits, probabilities or a label map without ever holding
the whole volume's class scores; ``SlidingWindowInferer`` wraps it as a MONAI ``Inferer``
(imported lazily, so ``import medseg3d.inference`` does not pull in MONAI).
"""

from __future__ import annotations

from medseg3d.inference.sliding_window import WindowStats, sliding_window_inference
from medseg3d.inference.windows import importance_map, window_grid, window_starts

__all__ = [
    "SlidingWindowInferer",
    "WindowStats",
    "importance_map",
    "sliding_window_inference",
    "window_grid",
    "window_starts",
]


def __getattr__(name: str):
    if name == "SlidingWindowInferer":
        from medseg3d.inference.inferer import SlidingWindowInferer

        return SlidingWindowInferer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
