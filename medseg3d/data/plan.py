"""The preprocessing plan: everything that turns a scan into network input, decided from data.

A :class:`Plan` is plain data (ints, floats, strings, lists, dicts) so it round-trips through
YAML/JSON and is stored in every model folder: training and ``medseg3d predict`` read the same
plan and so apply exactly the same preprocessing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from medseg3d.data.fingerprint import Fingerprint
from medseg3d.errors import ConfigError

NORMALIZATION_SCHEMES = ("ct", "zscore", "zscore_nonzero", "rescale", "none")
INTERPOLATION_KINDS = ("linear", "cubic", "nearest")
PLAN_VERSION = 1


@dataclass
class Plan:
    """How to preprocess a case (all lengths are per spatial axis, in the plan's axis order).

    Attributes:
        spatial_dims: 2 or 3.
        orientation: axis codes every case is reoriented to (``"RAS"``), None for 2D data.
        target_spacing: voxel size (mm) every case is resampled to.
        normalization: one dict per channel: ``{"scheme": "ct", "clip": [lo, hi], "mean": m,
            "std": s}``, ``{"scheme": "zscore_nonzero"}``, ``{"scheme": "zscore"}``,
            ``{"scheme": "rescale"}`` (min-max to [0, 1]) or ``{"scheme": "none"}``.
        patch_size: training/inference patch (voxels), multiples of ``2**depth``.
        labels: ``{name: value}`` with the background 0.
        num_channels, channel_names: the input channels.
        image_interpolation: how images are resampled (labels always nearest neighbour).
        median_shape: median case shape after resampling (voxels), for reference.
    """

    spatial_dims: int
    target_spacing: list[float]
    normalization: list[dict[str, Any]]
    patch_size: list[int]
    labels: dict[str, int]
    num_channels: int
    channel_names: list[str]
    orientation: str | None = "RAS"
    image_interpolation: str = "linear"
    median_shape: list[int] = field(default_factory=list)
    version: int = PLAN_VERSION

    @property
    def num_classes(self) -> int:
        """Network output channels: the largest label value + 1."""
        return max(self.labels.values()) + 1

    def to_dict(self) -> dict[str, Any]:
        """Plain ints/floats/strings/lists/dicts: safe for ``yaml.safe_dump`` and JSON."""
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """Inverse of :meth:`to_dict`; raises :class:`~medseg3d.errors.ConfigError` naming the key."""
        if not isinstance(data, dict):
            raise ConfigError(f"plan must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"plan: unknown keys {unknown}; allowed: {sorted(known)}")
        missing = [
            k
            for k in (
                "spatial_dims",
                "target_spacing",
                "normalization",
                "patch_size",
                "labels",
                "num_channels",
                "channel_names",
            )
            if k not in data
        ]
        if missing:
            raise ConfigError(f"plan: missing keys {missing}")
        plan = cls(**data)
        plan.validate()
        return plan

    def validate(self) -> None:
        dims = self.spatial_dims
        if dims not in (2, 3):
            raise ConfigError(f"plan.spatial_dims must be 2 or 3, got {dims}")
        for key in ("target_spacing", "patch_size"):
            value = getattr(self, key)
            if len(value) != dims or any(v <= 0 for v in value):
                raise ConfigError(f"plan.{key} must be {dims} positive numbers, got {value}")
        if (
            len(self.normalization) != self.num_channels
            or len(self.channel_names) != self.num_channels
        ):
            raise ConfigError(
                f"plan.normalization and plan.channel_names need {self.num_channels} entries (num_channels)"
            )
        for entry in self.normalization:
            if entry.get("scheme") not in NORMALIZATION_SCHEMES:
                raise ConfigError(
                    f"plan.normalization scheme {entry.get('scheme')!r} unknown; use one of {NORMALIZATION_SCHEMES}"
                )
            if entry["scheme"] == "ct" and not {"clip", "mean", "std"} <= set(entry):
                raise ConfigError("plan.normalization 'ct' needs clip, mean and std")
        if self.image_interpolation not in INTERPOLATION_KINDS:
            raise ConfigError(f"plan.image_interpolation must be one of {INTERPOLATION_KINDS}")
        if 0 not in self.labels.values():
            raise ConfigError("plan.labels must declare the background as 0")


def make_plan(
    fingerprint: Fingerprint,
    *,
    depth: int = 4,
    max_patch_voxels: int = 128**3,
    target_spacing: list[float] | None = None,
    anisotropy_threshold: float = 3.0,
    image_interpolation: str = "linear",
) -> Plan:
    """Plan preprocessing from a fingerprint (nnU-Net's rules, simplified).

    ``target_spacing`` (default) is the median spacing; for strongly anisotropic data (the
    coarsest axis > ``anisotropy_threshold`` x the finer ones, and few voxels along it) the
    coarse axis gets the 10th percentile instead, as nnU-Net does. The patch size is the median
    resampled shape rounded to multiples of ``2**depth`` and shrunk (largest physical extent
    first) until it holds at most ``max_patch_voxels`` voxels.
    """
    spacings = np.asarray(fingerprint.spacings, dtype=np.float64)
    shapes = np.asarray(fingerprint.shapes, dtype=np.float64)
    if target_spacing is None:
        target = _target_spacing(spacings, shapes, anisotropy_threshold)
    else:
        target = np.asarray(target_spacing, dtype=np.float64)
    resampled = np.median(shapes * spacings / target, axis=0)
    median_shape = [max(1, int(round(n))) for n in resampled]
    patch_size = fit_patch_size(median_shape, target, max_patch_voxels, 2**depth)
    normalization = [
        _normalization(name, stats)
        for name, stats in zip(fingerprint.channel_names, fingerprint.intensity)
    ]
    plan = Plan(
        spatial_dims=fingerprint.spatial_dims,
        orientation=fingerprint.orientation,
        target_spacing=[_short(s) for s in target],  # no float32 header noise
        normalization=normalization,
        patch_size=patch_size,
        labels=dict(fingerprint.labels),
        num_channels=len(fingerprint.channel_names),
        channel_names=list(fingerprint.channel_names),
        image_interpolation=image_interpolation,
        median_shape=median_shape,
    )
    plan.validate()
    return plan


def fit_patch_size(
    median_shape: list[int], spacing, max_voxels: int, divisor: int = 16
) -> list[int]:
    """The largest patch (multiples of ``divisor``) near ``median_shape`` within ``max_voxels``.

    Each axis starts at the median size rounded to the nearest multiple of ``divisor`` (at least
    ``divisor``); while the patch is too big, the axis with the largest extent in mm loses
    ``divisor`` voxels.
    """
    spacing = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (len(median_shape),))
    patch = [max(divisor, int(round(n / divisor)) * divisor) for n in median_shape]
    while math.prod(patch) > max_voxels:
        candidates = [i for i, n in enumerate(patch) if n > divisor]
        if not candidates:
            break
        axis = max(candidates, key=lambda i: (patch[i] * spacing[i], patch[i]))
        patch[axis] -= divisor
    return patch


def _target_spacing(spacings: np.ndarray, shapes: np.ndarray, threshold: float) -> np.ndarray:
    target = np.median(spacings, axis=0)
    if len(target) < 3:
        return target
    worst = int(np.argmax(target))
    others = [i for i in range(len(target)) if i != worst]
    median_shape = np.median(shapes, axis=0)
    aniso_spacing = target[worst] > threshold * max(target[others])
    aniso_voxels = median_shape[worst] * threshold < min(median_shape[others])
    if aniso_spacing and aniso_voxels:
        low = np.percentile(spacings[:, worst], 10)
        target[worst] = max(low, max(target[others]) + 1e-5)
    return target


def _normalization(channel_name: str, stats: dict[str, float]) -> dict[str, Any]:
    name = channel_name.strip().lower()
    if name == "ct":
        return {
            "scheme": "ct",
            "clip": [_short(stats["percentile_00_5"]), _short(stats["percentile_99_5"])],
            "mean": _short(stats["mean"]),
            "std": _short(max(stats["std"], 1e-8)),
        }
    if name in ("nonorm", "none"):
        return {"scheme": "none"}
    if name in ("rescale_to_0_1", "rescale"):
        return {"scheme": "rescale"}
    if name == "zscore":
        return {"scheme": "zscore"}
    return {"scheme": "zscore_nonzero"}


def _short(value: float) -> float:
    """``value`` to 7 significant digits: readable YAML, far below any meaningful difference."""
    return float(f"{float(value):.7g}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def plan_dataset(spec, *, progress: bool = False, **options: Any) -> Plan:
    """Fingerprint a :class:`~medseg3d.data.dataset.DatasetSpec` and plan it (``options`` go
    to :func:`make_plan`: ``depth``, ``max_patch_voxels``, ``target_spacing``…)."""
    from medseg3d.data.fingerprint import compute_fingerprint

    return make_plan(compute_fingerprint(spec, progress=progress), **options)
