"""Post-processing of label maps: keep the largest component per class, fill holes, measure volumes.

All functions take and return integer label maps ``(*spatial)`` (0 = background) and never change
the grid. Voxels removed from a class become background; holes are filled only where the label
map is background, so a structure enclosed by another one (a tumour inside an organ) is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from medseg3d.errors import ConfigError


def foreground_values(labels: np.ndarray) -> list[int]:
    """The non-zero label values present in ``labels``, ascending."""
    return [int(value) for value in np.unique(labels) if value != 0]


def keep_largest_component(
    labels: np.ndarray,
    values: Iterable[int] | None = None,
    *,
    connectivity: int | None = None,
) -> np.ndarray:
    """Keep, for each label value in ``values`` (default: all present), only its largest
    connected component; the other components become background (0).

    ``connectivity`` is the neighbourhood of :func:`scipy.ndimage.generate_binary_structure`:
    1 = faces (6-connected in 3D) up to ``ndim`` = faces, edges and corners (26-connected, the
    default, as in nnU-Net). Returns a new array of the same shape and dtype.
    """
    structure = _structure(labels.ndim, connectivity)
    result = labels.copy()
    for value in _values(labels, values):
        mask = labels == value
        components, count = ndimage.label(mask, structure=structure)
        if count <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        result[mask & (components != int(np.argmax(sizes)))] = 0
    return result


def fill_holes(
    labels: np.ndarray,
    values: Iterable[int] | None = None,
    *,
    connectivity: int | None = None,
) -> np.ndarray:
    """Fill enclosed background cavities of each label value (default: all present).

    A hole is a background region that is not connected to the outside of the volume through
    background; it takes the value of the structure around it. Voxels of other classes are never
    overwritten. Returns a new array.
    """
    structure = _structure(labels.ndim, connectivity or 1)
    result = labels.copy()
    for value in _values(labels, values):
        mask = result == value
        filled = ndimage.binary_fill_holes(mask, structure=structure)
        result[filled & (result == 0)] = value
    return result


_fill_holes = fill_holes


def postprocess(
    labels: np.ndarray,
    *,
    largest_component: bool | Sequence[int] = False,
    fill_holes: bool | Sequence[int] = False,
) -> np.ndarray:
    """Largest component, then hole filling; each is ``True`` (all classes), a list of label
    values, or ``False``. Returns ``labels`` itself when nothing is asked for."""
    if largest_component:
        values = None if largest_component is True else largest_component
        labels = keep_largest_component(labels, values)
    if fill_holes:
        values = None if fill_holes is True else fill_holes
        labels = _fill_holes(labels, values)
    return labels


def label_volumes(
    labels: np.ndarray,
    spacing: Sequence[float],
    names: Mapping[str, int],
) -> dict[str, dict[str, float]]:
    """Per named label (background excluded): ``{"value", "voxels", "volume_ml"}``.

    ``spacing`` is the voxel size in mm per array axis; 1 mL = 1000 mm^3. For a 2D map the
    "volume" is the area in mm^2 / 1000.
    """
    voxel_ml = float(np.prod(np.asarray(spacing, dtype=np.float64))) / 1000.0
    counts = np.bincount(labels.ravel().astype(np.int64, copy=False).clip(min=0))
    result = {}
    for name, value in names.items():
        if int(value) == 0:
            continue
        voxels = int(counts[value]) if 0 <= value < len(counts) else 0
        result[name] = {"value": int(value), "voxels": voxels, "volume_ml": voxels * voxel_ml}
    return result


def _values(labels: np.ndarray, values: Iterable[int] | None) -> list[int]:
    present = foreground_values(labels)
    if values is None:
        return present
    return [int(value) for value in values if int(value) in present and int(value) != 0]


def _structure(ndim: int, connectivity: int | None) -> np.ndarray:
    connectivity = ndim if connectivity is None else int(connectivity)
    if not 1 <= connectivity <= ndim:
        raise ConfigError(f"connectivity must be between 1 and {ndim}, got {connectivity}")
    return ndimage.generate_binary_structure(ndim, connectivity)
