"""Elastic deformation composed with a random affine, resampled once.

The mapping from an output voxel to the input is, in millimetres about the patch centre::

    q = A @ (p + d(p)) + t

``p`` is the output position, ``d`` a smooth displacement field, ``A`` the linear part of the
affine (rotation @ shear @ 1/zoom) and ``t`` a translation. ``d`` is a cubic B-spline over a coarse
grid of control points (like TorchIO's ``RandomElasticDeformation``): the dense field is built by
three small separable matrix products (one per axis), never by smoothing a full-resolution noise
volume. Everything is float32 on the input's device, and the image is resampled by a single
``grid_sample`` call (the label by a second, nearest-neighbour one).

*Sample, then apply*: :meth:`SpatialAugment.sample` (here) draws a :class:`SpatialParams` from a
``numpy.random.RandomState``; :func:`medseg3d.transforms.warp.apply_spatial` applies it
deterministically, to a tensor ``(C, *spatial)`` or to a batch ``(B, C, *spatial)`` with one
parameter set per sample.

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

from medseg3d.errors import ConfigError
from medseg3d.nn import layers

logger = logging.getLogger(__name__)

#: Largest control-point displacement, as a fraction of the control-point spacing, kept when
#: ``fold_free=True``; below the 1/2.046 bound that guarantees a positive Jacobian determinant.
FOLD_FREE_LIMIT = 0.45


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
