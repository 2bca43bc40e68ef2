"""Deterministic application of :class:`~medseg3d.transforms.elastic.SpatialParams`.

The whole mapping (affine and B-spline displacement) becomes one ``grid_sample`` grid built by
a separable cubic B-spline evaluation: the affine part is folded into the spline coefficients
(cubic B-splines reproduce linear functions exactly), so no dense position volume and no dense
matrix product are needed. float32 on the input's device; batched when given one params per
sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.nn import layers
from medseg3d.transforms.elastic import SpatialParams

KINDS = ("linear", "nearest", "cubic", "onehot")


def apply_spatial(
    x: torch.Tensor,
    params: SpatialParams | Sequence[SpatialParams],
    output_shape: Sequence[int] | None = None,
    *,
    kind: str = "linear",
    spacing: Sequence[float] | None = None,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Resample ``x`` ``(C, *spatial)`` (or ``(B, C, *spatial)`` with one params per sample).

    ``output_shape`` defaults to the input's; a different size is centred on the input (so a
    larger input patch is deformed and centre-cropped in the same single resampling). ``kind``:
    ``"linear"`` / ``"cubic"`` (2D only) for images, ``"nearest"`` or ``"onehot"`` (one-hot,
    linear, argmax) for label maps, which keep their dtype and never gain a new value other than
    the background 0 outside the input.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown interpolation {kind!r}; choose one of: {', '.join(KINDS)}")
    batched = not isinstance(params, SpatialParams)
    params_list = list(params) if batched else [params]
    dims = len(params_list[0].translation)
    batch = x if batched else x[None]
    if batch.dim() != dims + 2 or batch.shape[0] != len(params_list):
        raise ShapeError(
            f"expected {'(B, C, *spatial)' if batched else '(C, *spatial)'} with {dims} spatial "
            f"dims and one params per sample, got shape {tuple(x.shape)} for {len(params_list)} params"
        )
    input_shape = tuple(batch.shape[2:])
    output_shape = input_shape if output_shape is None else tuple(int(n) for n in output_shape)
    grid = sampling_grid(params_list, output_shape, input_shape, spacing, batch.device)
    if kind == "onehot":
        out = _sample_onehot(batch, grid)
    elif batch.dtype.is_floating_point and kind != "nearest":
        out = layers.grid_sample(batch.float(), grid, kind=kind, padding_mode=padding_mode)
    else:
        out = _lookup_nearest(batch, grid)
    return out if batched else out[0]


#: dtypes whose every value survives a float32 round trip (grid_sample is the faster lookup)
_FLOAT_EXACT = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.float16, torch.float32)


def _lookup_nearest(batch: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    if batch.dtype in _FLOAT_EXACT:
        return layers.grid_sample(batch.float(), grid, kind="nearest").to(batch.dtype)
    return _sample_nearest(batch, grid)  # int32/int64/float64 labels: exact by index


def _sample_nearest(batch: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour lookup by index (any dtype, no float copy of the input); 0 outside.

    Same rounding and bounds as ``grid_sample(mode="nearest", align_corners=True)``.
    """
    size, channels, *spatial = batch.shape
    dims = len(spatial)
    index = torch.zeros(grid.shape[:-1], dtype=torch.int64, device=batch.device)
    inside = torch.ones(grid.shape[:-1], dtype=torch.bool, device=batch.device)
    for axis, n in enumerate(spatial):
        position = torch.round((grid[..., dims - 1 - axis] + 1) * ((n - 1) / 2))
        inside &= (position >= 0) & (position <= n - 1)
        index = index * n + position.clamp(0, n - 1).long()
    flat = index.reshape(size, 1, -1).expand(size, channels, -1)
    out = torch.gather(batch.reshape(size, channels, -1), 2, flat)
    out = torch.where(
        inside.reshape(size, 1, -1), out, torch.zeros((), dtype=out.dtype, device=out.device)
    )
    return out.reshape(size, channels, *grid.shape[1:-1])


def _sample_onehot(batch: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    if batch.shape[1] != 1:
        raise ShapeError(
            f"kind='onehot' needs a single-channel label map, got {batch.shape[1]} channels"
        )
    values = torch.unique(batch)
    view = (1, -1) + (1,) * (batch.dim() - 2)
    sampled = layers.grid_sample((batch == values.view(view)).float(), grid, kind="linear")
    out = values[sampled.argmax(dim=1, keepdim=True)]
    # outside the input every channel is 0: that is background
    out = torch.where(sampled.sum(dim=1, keepdim=True) > 0.5, out, torch.zeros_like(out))
    return out.to(batch.dtype)


def sampling_grid(
    params: Sequence[SpatialParams],
    output_shape: Sequence[int],
    input_shape: Sequence[int],
    spacing: Sequence[float] | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The ``grid_sample`` grid ``(B, *output_shape, D)`` (float32, ``align_corners=True``).

    The affine part is folded into the spline coefficients (a cubic B-spline reproduces linear
    functions exactly), so the whole grid is one separable spline evaluation: no dense position
    volume, no dense matrix product.
    """
    dims = len(output_shape)
    output_shape = tuple(int(n) for n in output_shape)
    spacing = np.ones(dims) if spacing is None else np.asarray(spacing, dtype=float)
    n_in = np.asarray(input_shape, dtype=float)
    n_out = np.asarray(output_shape, dtype=float)
    factor = np.where(n_in > 1, 2.0 / np.maximum(n_in - 1, 1), 0.0)
    centre = (n_out - 1) / 2 + (np.asarray(input_shape) - np.asarray(output_shape)) // 2
    grid = torch.empty(len(params), *output_shape, dims, dtype=torch.float32, device=device)
    for index, item in enumerate(params):
        # normalised source = (A (p + d) + t) * factor / s + factor * centre - 1, axes reversed
        linear = ((factor / spacing)[:, None] * item.matrix).T[:, ::-1]
        offset = (factor / spacing * item.translation + factor * centre - 1)[::-1]
        control = item.displacements
        count = (4,) * dims if control is None else control.shape[:-1]
        positions = _control_positions(output_shape, count, spacing)
        if control is not None:
            positions = positions + control
        coefficients = torch.as_tensor(
            positions @ linear + offset, dtype=torch.float32, device=device
        )
        grid[index] = bspline_evaluate(coefficients, output_shape)
    return grid


def _control_positions(output_shape, count, spacing) -> np.ndarray:
    """Positions in mm (about the output centre) of a control grid ``(*count, D)``."""
    axes = []
    for n, k, s in zip(output_shape, count, spacing):
        step = (n - 1) / (k - 3) if n > 1 else 0.0  # voxels between control points
        axes.append((np.arange(k) - 1 - (k - 3) / 2) * step * s)
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def displacement_field(
    displacements: np.ndarray,
    output_shape: Sequence[int],
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The dense cubic B-spline field ``(*output_shape, D)`` in mm from control-point displacements."""
    field = torch.as_tensor(displacements, dtype=torch.float32, device=device)
    return bspline_evaluate(field, output_shape)


def bspline_evaluate(coefficients: torch.Tensor, output_shape: Sequence[int]) -> torch.Tensor:
    """Evaluate a cubic B-spline ``(*num_control_points, D)`` on ``output_shape`` -> ``(*output_shape, D)``.

    Separable: one ``(n_out, n_control)`` weight matrix per axis. The last axis goes first
    (its weights Kronecker-expanded over the ``D`` components), so every later step is a large
    matrix product over the already-dense trailing axes and no transpose is ever needed. The
    first and last control points lie one control spacing outside the patch (spline support).
    """
    *counts, components = coefficients.shape
    output_shape = [int(n) for n in output_shape]
    eye = torch.eye(components, dtype=coefficients.dtype, device=coefficients.device)
    last = torch.kron(bspline_weights(output_shape[-1], counts[-1], coefficients.device), eye)
    field = coefficients.reshape(-1, counts[-1] * components) @ last.T
    shape = [*counts[:-1], output_shape[-1] * components]
    expanded = 1
    for axis, n in enumerate(output_shape[:-1]):
        weights = bspline_weights(n, shape[axis], coefficients.device)
        rest = int(np.prod(shape[axis + 1 :]))
        field = torch.matmul(weights, field.reshape(expanded, shape[axis], rest))
        expanded *= n
        shape[axis] = n
    return field.reshape(*output_shape, components)


def bspline_weights(n_out: int, n_control: int, device=None) -> torch.Tensor:
    """Cubic B-spline weights ``(n_out, n_control)``; output voxel 0 sits on control point 1."""
    step = (n_control - 3) / max(n_out - 1, 1)
    u = torch.arange(n_out, dtype=torch.float32, device=device) * step + 1.0
    if n_out == 1:
        u = u + (n_control - 3) / 2
    t = (u[:, None] - torch.arange(n_control, dtype=torch.float32, device=device)[None]).abs()
    inner = 2.0 / 3.0 - t**2 + t**3 / 2
    outer = (2.0 - t).clamp(min=0) ** 3 / 6
    return torch.where(t < 1, inner, outer)


def voxel_map(
    params: SpatialParams,
    output_shape: Sequence[int],
    input_shape: Sequence[int],
    spacing: Sequence[float] | None = None,
) -> np.ndarray:
    """The affine part ``(D+1, D+1)`` of the output voxel -> input voxel mapping (no elastic)."""
    dims = len(output_shape)
    spacing = np.ones(dims) if spacing is None else np.asarray(spacing, dtype=float)
    centre_out = (np.asarray(output_shape) - 1) / 2
    centre_in = centre_out + (np.asarray(input_shape) - np.asarray(output_shape)) // 2
    linear = np.diag(1 / spacing) @ params.matrix @ np.diag(spacing)
    mapping = np.eye(dims + 1)
    mapping[:dims, :dims] = linear
    mapping[:dims, dims] = params.translation / spacing - linear @ centre_out + centre_in
    return mapping


def jacobian_determinant(
    displacements: np.ndarray, output_shape: Sequence[int], spacing: Sequence[float] | None = None
) -> torch.Tensor:
    """Determinant of ``I + grad d`` at every output voxel, ``(*output_shape)``; > 0 means no folding."""
    dims = len(output_shape)
    spacing = [1.0] * dims if spacing is None else [float(s) for s in spacing]
    field = displacement_field(displacements, output_shape)
    gradients = [torch.gradient(field[..., a], spacing=spacing) for a in range(dims)]
    jacobian = torch.stack([torch.stack(g, dim=-1) for g in gradients], dim=-2)
    return torch.linalg.det(jacobian + torch.eye(dims))
