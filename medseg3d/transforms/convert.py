"""Type handling shared by every transform: numpy / torch / ``MetaTensor`` in, torch out.

The functional core works on plain ``torch.Tensor`` s. The wrappers call :func:`to_tensor` on the
way in (numpy arrays, memmaps included, become torch tensors; images become float32, label maps
keep their integer dtype) and :func:`like_input` on the way out, which re-attaches a
``MetaTensor``'s metadata and, for spatial transforms, updates its affine with the voxel mapping
(output voxel index -> input voxel index) so the result still sits at the right place in the world.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import numpy as np
import torch

from medseg3d.errors import ShapeError


def _is_meta_tensor(x: Any) -> bool:
    """Whether ``x`` is a MONAI ``MetaTensor``, without importing MONAI (seconds at start-up):
    when MONAI is not loaded yet, nothing can be one."""
    module = sys.modules.get("monai.data.meta_tensor")
    return module is not None and isinstance(x, module.MetaTensor)


def to_tensor(
    x: Any, *, label: bool | None = False, device: torch.device | str | None = None
) -> torch.Tensor:
    """``x`` as a plain tensor: float32 for images, the dtype kept for labels.

    ``label=None``: integer and boolean arrays are kept (bool as uint8), floats become float32.

    ``MetaTensor`` s lose their metadata here (see :func:`like_input` to put it back); numpy
    arrays are converted without a copy where the dtype allows.
    """
    if _is_meta_tensor(x):
        tensor = x.as_tensor()
    elif isinstance(x, torch.Tensor):
        tensor = x
    else:
        array = np.asarray(x)
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        elif array.dtype.byteorder not in ("=", "|"):
            array = array.astype(array.dtype.newbyteorder("="))
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device is not None:
        tensor = tensor.to(device)
    if label is None:
        label = not tensor.dtype.is_floating_point
    if not label and tensor.dtype != torch.float32:
        tensor = tensor.float()
    if label and tensor.dtype == torch.bool:
        tensor = tensor.to(torch.uint8)
    return tensor


def like_input(
    out: torch.Tensor, original: Any, voxel_map: np.ndarray | None = None
) -> torch.Tensor:
    """``out`` as a ``MetaTensor`` carrying ``original`` 's metadata when ``original`` was one.

    ``voxel_map``: ``(D+1, D+1)`` homogeneous matrix from an output voxel index to the input voxel
    index (the affine part of a spatial transform), or ``(B, D+1, D+1)``, one per sample of a
    batch; the affine becomes ``affine @ voxel_map``.
    """
    if not _is_meta_tensor(original):
        return out
    from monai.data import MetaTensor

    meta = copy.copy(original.meta)
    result = MetaTensor(out, meta=meta, applied_operations=list(original.applied_operations))
    result.is_batch = original.is_batch
    if voxel_map is not None:
        result.affine = compose_affine(original.affine, voxel_map)
    return result


def compose_affine(affine: torch.Tensor | np.ndarray, voxel_map: np.ndarray) -> torch.Tensor:
    """``affine @ voxel_map`` where ``voxel_map`` may cover fewer spatial dims than ``affine``.

    Either may carry a leading batch axis (``(B, 4, 4)``): the product is taken per sample.
    """
    affine = torch.as_tensor(affine, dtype=torch.float64)
    voxel_map = np.asarray(voxel_map, dtype=np.float64)
    rank = affine.shape[-1] - 1
    dims = voxel_map.shape[-1] - 1
    if dims > rank:
        return affine
    embedded = np.zeros((*voxel_map.shape[:-2], rank + 1, rank + 1))
    embedded[...] = np.eye(rank + 1)
    embedded[..., :dims, :dims] = voxel_map[..., :dims, :dims]
    embedded[..., :dims, rank] = voxel_map[..., :dims, dims]
    return affine @ torch.as_tensor(embedded, dtype=torch.float64)


def spatial_shape_of(x: Any, spatial_dims: int) -> tuple[int, ...]:
    """The trailing ``spatial_dims`` sizes of a ``(C, *spatial)`` array; raises :class:`ShapeError`."""
    shape = tuple(int(s) for s in x.shape)
    if len(shape) != spatial_dims + 1:
        raise ShapeError(
            f"expected a channel-first array (C, *spatial) with {spatial_dims} spatial dims, got "
            f"shape {shape}; add a channel axis (e.g. EnsureChannelFirstd) or fix spatial_dims"
        )
    return shape[1:]
