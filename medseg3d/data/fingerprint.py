"""A dataset fingerprint: what a preprocessing plan needs to know about the data.

Per case: voxel spacing (mm) and shape (voxels), both in the axis order of the plan's
orientation (``"RAS"``), so an LPS or axial-sagittal-swapped case counts along the same axes.
Per channel, pooled over cases: intensity statistics of voxels *inside the foreground*
(label > 0): percentiles 0.5 / 50 / 99.5, mean, std, as nnU-Net's fingerprint extractor does
(up to ``samples_per_case`` voxels per case, seeded).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from medseg3d.data.dataset import DatasetSpec
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)


@dataclass
class Fingerprint:
    """Spacings and shapes per case (plan axis order), intensity statistics per channel."""

    spatial_dims: int
    case_ids: list[str]
    spacings: list[list[float]]
    shapes: list[list[int]]
    intensity: list[dict[str, float]]
    channel_names: list[str]
    labels: dict[str, int]
    orientation: str | None = "RAS"
    foreground_fraction: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        return cls(**data)


def reoriented_geometry(
    affine: np.ndarray, shape: tuple[int, ...], orientation: str | None
) -> tuple[list[float], list[int]]:
    """Spacing (mm) and shape (voxels) a grid will have after reorienting to ``orientation``.

    Reading the affine only: no voxels are moved. ``orientation=None`` (2D data) keeps the
    array order.
    """
    spacing = np.linalg.norm(np.asarray(affine)[:3, : len(shape)], axis=0)
    if orientation is None or len(shape) != 3:
        return [float(s) for s in spacing], [int(n) for n in shape]
    import nibabel.orientations as nio

    transform = nio.ornt_transform(nio.io_orientation(affine), nio.axcodes2ornt(tuple(orientation)))
    out_spacing, out_shape = [0.0] * 3, [0] * 3
    for axis, (target, _) in enumerate(transform):
        out_spacing[int(target)] = float(spacing[axis])
        out_shape[int(target)] = int(shape[axis])
    return out_spacing, out_shape


def compute_fingerprint(
    spec: DatasetSpec,
    *,
    orientation: str | None = "RAS",
    samples_per_case: int = 10_000,
    seed: int = 1234,
    progress: bool = False,
) -> Fingerprint:
    """Read every training case once and summarise it (see the module docstring)."""
    from medseg3d.data.reading import read_case

    rng = np.random.default_rng(seed)
    spacings, shapes, fractions = [], [], []
    samples: list[list[np.ndarray]] = [[] for _ in range(spec.num_channels)]
    spatial_dims = None
    for case in _maybe_progress(spec.cases, progress, "fingerprint"):
        channels, label = read_case(case)
        reference: Volume = channels[0]
        spatial_dims = reference.spatial_dims
        case_orientation = orientation if spatial_dims == 3 else None
        spacing, shape = reoriented_geometry(
            reference.affine, reference.spatial_shape, case_orientation
        )
        spacings.append(spacing)
        shapes.append(shape)
        mask = label.array > 0 if label is not None else np.ones(reference.spatial_shape, bool)
        if not mask.any():  # no foreground: sample the whole image rather than nothing
            mask = np.ones(reference.spatial_shape, bool)
        fractions.append(float(mask.mean()))
        index = np.flatnonzero(mask)
        chosen = rng.choice(index, size=min(samples_per_case, index.size), replace=False)
        for c, channel in enumerate(channels[: spec.num_channels]):
            samples[c].append(np.asarray(channel.array).ravel()[chosen].astype(np.float64))
    intensity = [_statistics(np.concatenate(s) if s else np.zeros(1)) for s in samples]
    return Fingerprint(
        spatial_dims=int(spatial_dims or 3),
        case_ids=spec.case_ids,
        spacings=spacings,
        shapes=shapes,
        intensity=intensity,
        channel_names=list(spec.channel_names),
        labels=dict(spec.labels),
        orientation=orientation if (spatial_dims or 3) == 3 else None,
        foreground_fraction=fractions,
    )


def _statistics(values: np.ndarray) -> dict[str, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        values = np.zeros(1)
    p005, p50, p995 = np.percentile(values, [0.5, 50.0, 99.5])
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "median": float(p50),
        "percentile_00_5": float(p005),
        "percentile_99_5": float(p995),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def _maybe_progress(items, progress: bool, description: str):
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, unit="case", leave=False)
