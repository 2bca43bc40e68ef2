"""medseg3d: segmentation of 3D medical volumes with the U-Net family.

The package layout follows the data: ``io`` -> ``transforms`` -> ``data`` -> ``nn`` ->
``losses``/``metrics`` -> ``inference`` -> ``batch``/``training`` -> ``cli``.

``medseg3d.Predictor``, ``medseg3d.load_volume``, ``medseg3d.save_volume`` and
``medseg3d.build_model`` are imported lazily, so ``import medseg3d`` stays light.
"""

from __future__ import annotations

from typing import Any

from medseg3d.errors import MedsegError

__version__ = "0.1.0"

_LAZY = {
    "Predictor": "medseg3d.inference.predictor",
    "Volume": "medseg3d.io",
    "load_volume": "medseg3d.io",
    "save_volume": "medseg3d.io",
    "build_model": "medseg3d.nn",
    "MODELS": "medseg3d.nn",
}

__all__ = ["MedsegError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medseg3d' has no attribute {name!r}")
