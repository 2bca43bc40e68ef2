"""Skip connections: center-crop (for valid padding) and fusion by concatenation."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medseg3d.errors import ShapeError


def center_crop(x: torch.Tensor, spatial_shape: Sequence[int]) -> torch.Tensor:
    """Crop ``x`` ``(B, C, *S)`` to ``(B, C, *spatial_shape)`` around its centre.

    When a size difference is odd the extra voxel is cut at the end, as in the 2015 U-Net.
    Symbolic sizes (``torch.export`` with dynamic shapes) stay symbolic.
    """
    current = tuple(x.shape[2:])
    target = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in spatial_shape)
    if len(target) != len(current) or any(t > c for t, c in zip(target, current)):
        raise ShapeError(f"cannot center-crop a map of size {current} to {target}")
    if target == current:
        return x
    slices = [slice(None), slice(None)]
    slices += [slice((c - t) // 2, (c - t) // 2 + t) for c, t in zip(current, target)]
    return x[tuple(slices)]


def concat_skip(skip: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Fuse an encoder ``skip`` ``(B, Cs, *S_skip)`` with decoder ``up`` ``(B, Cu, *S)``.

    The skip is center-cropped to ``S`` (a no-op with same padding); result ``(B, Cs + Cu, *S)``.
    """
    return torch.cat([center_crop(skip, up.shape[2:]), up], dim=1)
