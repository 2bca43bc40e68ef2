"""Elastic deformation composed with a random affine, resampled once.

The mapping from an output voxel to the input is, in millimetres about the patch centre::

    q = A @ (p + d(p)) + t

``p`` is the output position, ``d`` a smooth displacement field, ``A`` the linear part of the
affine (rotation @ shear @ 1/zoom) and ``t`` a translation. ``d`` is a cubic B-spline over a coarse
grid of control points (like TorchIO's ``RandomElasticDeformation``): the dense field is built by
three small separable matrix products (one per axis), never by smoothing a full-resolution noise
volume. Everything is float32 on the input's device, and the image is resampled by a single
``grid_sample`` call (the label by a second, nearest-neighbour one).

*Sample, then apply*: :meth:`SpatialAugment.sample` draws a :class:`SpatialParams` from a
``numpy.random.RandomState``; :func:`apply_spatial` applies it deterministically, to a tensor
``(C, *spatial)`` or to a batch ``(B, C, *spatial)`` with one parameter set per sample.

No folding: a cubic B-spline whose control-point displacements stay below ``1/K`` of the control
spacing (``K ~= 2.05`` in 3D, Choi & Lee 2000) is a diffeomorphism; with ``fold_free=True`` (the
default) displacements are clipped to :data:`FOLD_FREE_LIMIT` of the smallest control spacing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import torch

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.nn import layers

logger = logging.getLogger(__name__)

#: Largest control-point displacement, as a fraction of the control-point spacing, kept when
#: ``fold_free=True``; below the 1/2.046 bound that guarantees a positive Jacobian determinant.
FOLD_FREE_LIMIT = 0.45
KINDS = ("linear", "nearest", "cubic", "onehot")


@dataclass(frozen=True)
class SpatialParams:
    """One draw of the spatial transform (float64 numpy, device-free).

    matrix: ``(D, D)`` linear part, output mm -> input mm (identity for none).
    translation: ``(D,)`` in mm.
    displacements: ``(*num_control_points, D)`` control-point displacements in mm, or None.
    """

    matrix: np.ndarray
    translation: np.ndarray
    displacements: np.ndarray | None = None

    @classmethod
    def identity(cls, spatial_dims: int) -> SpatialParams:
        return cls(np.eye(spatial_dims), np.zeros(spatial_dims), None)

    @property
    def is_identity(self) -> bool:
        return (
            self.displacements is None
            and np.array_equal(self.matrix, np.eye(len(self.translation)))
            and not np.any(self.translation)
        )


@dataclass
class SpatialAugment:
    """Settings of the random elastic + affine transform; :meth:`sample` draws parameters.

    Distances are in mm when a ``spacing`` is passed to :meth:`sample`, otherwise in voxels.
    Angles are radians; ``rotate_range`` gives one range per rotation axis in 3D (one in 2D), each
    a half-width ``r`` (meaning ``(-r, r)``) or a ``(low, high)`` pair. ``scale_range`` holds zoom
    factors: above 1 structures appear larger. Each part is applied with its own probability.
    """

    spatial_dims: int
    num_control_points: int | Sequence[int] = 7
    max_displacement: float | Sequence[float] = 7.5
    elastic_prob: float = 1.0
    rotate_range: float | Sequence = 0.0
    rotate_prob: float = 1.0
    scale_range: Sequence[float] | None = None
    scale_prob: float = 1.0
    isotropic_scale: bool = True
    shear_range: float = 0.0
    shear_prob: float = 1.0
    translate_range: float | Sequence[float] = 0.0
    translate_prob: float = 1.0
    locked_borders: int = 0
    fold_free: bool = True

    def __post_init__(self) -> None:
        dims = self.spatial_dims = layers.check_spatial_dims(self.spatial_dims)
        self.num_control_points = _per_axis(self.num_control_points, dims, "num_control_points")
        if min(self.num_control_points) < 4:
            raise ConfigError(
                f"num_control_points must be >= 4 per axis, got {self.num_control_points}"
            )
        self.max_displacement = _per_axis(self.max_displacement, dims, "max_displacement", float)
        if min(self.max_displacement) < 0:
            raise ConfigError(f"max_displacement must be >= 0, got {self.max_displacement}")
        self.rotate_ranges = parse_ranges(
            self.rotate_range, len(rotation_planes(dims)), "rotate_range"
        )
        self.translate_ranges = parse_ranges(self.translate_range, dims, "translate_range")
        if self.scale_range is not None:
            low, high = (float(v) for v in self.scale_range)
            if not 0 < low <= high:
                raise ConfigError(
                    f"scale_range must be (low, high) with 0 < low <= high, got {self.scale_range}"
                )
        for name in ("elastic_prob", "rotate_prob", "scale_prob", "shear_prob", "translate_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if 2 * self.locked_borders >= min(self.num_control_points):
            raise ConfigError(f"locked_borders={self.locked_borders} locks every control point")

    def sample(
        self,
        rng: np.random.RandomState,
        output_shape: Sequence[int],
        spacing: Sequence[float] | None = None,
    ) -> SpatialParams:
        """Draw one :class:`SpatialParams` for an output of ``output_shape`` voxels."""
        dims = self.spatial_dims
        spacing = np.ones(dims) if spacing is None else np.asarray(spacing, dtype=float)
        matrix = np.eye(dims)
        if any(high > low for low, high in self.rotate_ranges) and rng.uniform() < self.rotate_prob:
            angles = [rng.uniform(low, high) for low, high in self.rotate_ranges]
            matrix = rotation_matrix(dims, angles)
        if self.shear_range and rng.uniform() < self.shear_prob:
            shear = np.eye(dims) + rng.uniform(
                -self.shear_range, self.shear_range, (dims, dims)
            ) * (1 - np.eye(dims))
            matrix = matrix @ shear
        if self.scale_range is not None and rng.uniform() < self.scale_prob:
            count = 1 if self.isotropic_scale else dims
            zoom = np.broadcast_to(rng.uniform(*self.scale_range, size=count), (dims,))
            matrix = matrix @ np.diag(1.0 / zoom)
        translation = np.zeros(dims)
        if (
            any(high > low for low, high in self.translate_ranges)
            and rng.uniform() < self.translate_prob
        ):
            translation = np.array([rng.uniform(low, high) for low, high in self.translate_ranges])
        displacements = None
        if max(self.max_displacement) > 0 and rng.uniform() < self.elastic_prob:
            displacements = self._sample_displacements(rng, output_shape, spacing)
        return SpatialParams(matrix, translation, displacements)

    def _sample_displacements(self, rng, output_shape, spacing) -> np.ndarray:
        grid = tuple(self.num_control_points)
        limit = np.asarray(self.max_displacement)
        values = rng.uniform(-1.0, 1.0, (*grid, self.spatial_dims)) * limit
        if self.fold_free:
            control_spacing = [
                (max(n, 1) - 1) * s / (k - 3) for n, s, k in zip(output_shape, spacing, grid)
            ]
            bound = FOLD_FREE_LIMIT * min(control_spacing)
            if limit.max() > bound:
                logger.debug("elastic displacement clipped to %.3g (fold-free bound)", bound)
            values = np.clip(values, -bound, bound)
        if self.locked_borders:
            lock = self.locked_borders
            for axis in range(self.spatial_dims):
                index = [slice(None)] * (self.spatial_dims + 1)
                index[axis] = np.r_[0:lock, grid[axis] - lock : grid[axis]]
                values[tuple(index)] = 0.0
        return values


# --- deterministic application ------------------------------------------------------------------
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
        out = layers.grid_sample(batch.float(), grid, kind="nearest").round().to(batch.dtype)
    return out if batched else out[0]


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

    Separable: one ``(n_out, n_control)`` weight matrix per axis, applied in turn by a batched
    matrix product that keeps the memory layout (no transposes). The first and last control
    points lie one control spacing outside the patch (spline support).
    """
    field = coefficients
    expanded = 1
    for axis, n in enumerate(output_shape):
        count = field.shape[axis]
        weights = bspline_weights(int(n), count, field.device)
        rest = int(np.prod(field.shape[axis + 1 :]))
        field = torch.matmul(weights, field.reshape(expanded, count, rest))
        expanded *= int(n)
        field = field.reshape(*output_shape[: axis + 1], *coefficients.shape[axis + 1 :])
    return field


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


def rotation_matrix(spatial_dims: int, angles: Sequence[float]) -> np.ndarray:
    """Rotation by ``angles`` (radians): about axes 0, 1, 2 in 3D, in the image plane in 2D."""
    matrix = np.eye(spatial_dims)
    for (i, j), angle in zip(rotation_planes(spatial_dims), angles):
        plane = np.eye(spatial_dims)
        plane[i, i] = plane[j, j] = np.cos(angle)
        plane[i, j], plane[j, i] = -np.sin(angle), np.sin(angle)
        matrix = matrix @ plane
    return matrix


def rotation_planes(spatial_dims: int) -> list[tuple[int, int]]:
    """Rotation planes ordered by the axis they turn about: (1, 2), (0, 2), (0, 1) in 3D."""
    return list(reversed(list(combinations(range(spatial_dims), 2))))


def _per_axis(value, dims: int, name: str, cast=int) -> list:
    values = [value] * dims if np.isscalar(value) else list(value)
    if len(values) != dims:
        raise ConfigError(f"{name} needs 1 or {dims} values, got {value!r}")
    return [cast(v) for v in values]


def parse_ranges(value, count: int, name: str) -> list[tuple[float, float]]:
    """``r`` -> ``[(-r, r)] * count``; ``[r0, r1..]`` or ``[(lo, hi)..]`` per item."""
    if value is None:
        return [(0.0, 0.0)] * count
    items = [value] * count if np.isscalar(value) else list(value)
    if count != 2 and len(items) == 2 and all(np.isscalar(v) for v in items):
        items = [tuple(items)]  # one (low, high) pair for every item
    if len(items) == 1:
        items = items * count
    if len(items) != count:
        raise ConfigError(f"{name} needs 1 or {count} ranges, got {value!r}")
    ranges = []
    for item in items:
        low, high = (-abs(float(item)), abs(float(item))) if np.isscalar(item) else map(float, item)
        if low > high:
            raise ConfigError(f"{name}: low {low} > high {high}")
        ranges.append((low, high))
    return ranges
