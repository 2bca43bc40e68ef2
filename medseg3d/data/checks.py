"""Content checks of one case, used by :func:`medseg3d.data.dataset.validate_dataset`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg3d.data.dataset import Case
from medseg3d.errors import MedsegError

#: Largest allowed difference between two affines (mm) for "the same grid".
GEOMETRY_TOLERANCE_MM = 1e-4


def check_case_content(
    case: Case, labels: dict[str, int], num_channels: int, root: Path
) -> list[str]:
    """Every problem in a case's files, as short sentences (empty when all is well)."""
    from medseg3d.data.reading import read_volume

    problems: list[str] = []
    channels = []
    for path in case.images:
        try:
            volume = read_volume(path, check=False)
        except (MedsegError, OSError, ValueError) as error:
            problems.append(f"cannot read {_name(path, root)} ({_reason(error)})")
            continue
        for c in range(volume.num_channels):
            array = volume.array[..., c] if volume.has_channels else volume.array
            channels.append((path, volume, array))
    label = None
    if case.label is not None:
        try:
            label = read_volume(case.label, check=False)
        except (MedsegError, OSError, ValueError) as error:
            problems.append(f"cannot read {_name(case.label, root)} ({_reason(error)})")
    if problems:
        return problems

    if len(channels) != num_channels:
        problems.append(f"has {len(channels)} image channels, dataset.json declares {num_channels}")
    reference_path, reference, _ = channels[0]
    for path, volume, array in channels:
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad = int(np.size(array) - np.isfinite(array).sum())
            problems.append(
                f"{_name(path, root)} has {bad} NaN/Inf voxels, fix or re-export the image"
            )
        if path != reference_path:
            problems += _grid_mismatch(
                volume,
                reference,
                _name(path, root),
                _name(reference_path, root),
                f"resample every channel onto the grid of {_name(reference_path, root)}",
            )
    if label is not None:
        if label.has_channels:
            problems.append(
                f"{_name(case.label, root)} has channels {label.array.shape} but a label map is one integer per voxel"
            )
            return problems
        problems += _grid_mismatch(
            label,
            reference,
            _name(case.label, root),
            _name(reference_path, root),
            "resample the label onto the image grid",
        )
        problems += _label_value_problems(label.array, labels, _name(case.label, root))
    return problems


def _grid_mismatch(volume, reference, name: str, reference_name: str, advice: str) -> list[str]:
    if volume.spatial_shape != reference.spatial_shape:
        return [
            f"{name} has shape {volume.spatial_shape} but {reference_name} has {reference.spatial_shape}"
        ]
    difference = _affine_distance(volume.affine, reference.affine, volume.spatial_shape)
    if difference > GEOMETRY_TOLERANCE_MM:
        return [
            f"{name} and {reference_name} differ in geometry (affines up to {difference:.3g} mm apart): "
            f"{advice}"
        ]
    return []


def _affine_distance(a: np.ndarray, b: np.ndarray, shape) -> float:
    """Largest distance (mm) between the two affines' positions of the grid's corner voxels."""
    corners = np.array(np.meshgrid(*[[0, max(n - 1, 0)] for n in shape], indexing="ij")).reshape(
        len(shape), -1
    )
    corners = np.vstack(
        [corners, np.zeros((3 - len(shape), corners.shape[1])), np.ones((1, corners.shape[1]))]
    )
    return float(np.abs((a - b) @ corners)[:3].max())


def _label_value_problems(array: np.ndarray, labels: dict[str, int], name: str) -> list[str]:
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            return [f"{name} has NaN/Inf voxels: a label map holds integers"]
        if not np.array_equal(array, np.round(array)):
            return [
                f"{name} holds non-integer values but a label map holds integers (save it with nearest-neighbour resampling)"
            ]
    values = np.unique(array)
    undeclared = sorted(int(v) for v in values if int(v) not in set(labels.values()))
    if undeclared:
        return [
            f"{name} holds label values {undeclared} not declared in dataset.json 'labels' {sorted(labels.values())}"
        ]
    return []


def _name(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _reason(error: Exception) -> str:
    """The error's own one-line message (without the path prefix of a MedsegError)."""
    message = getattr(error, "message", None) or str(error)
    return message.splitlines()[0] if message else type(error).__name__
