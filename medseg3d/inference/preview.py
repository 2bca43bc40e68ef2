"""A quick-look PNG of a segmentation: axial, coronal and sagittal slices with the mask overlaid.

The slices pass through the centre of the largest structure. Both volumes are first reoriented to
the closest RAS+ axes (voxel order only, no resampling), then shown in radiological convention,
the way 3D Slicer and PACS viewers show them:

* axial: seen from the feet, patient's right on the left of the picture, anterior at the top;
* coronal: seen from the front, patient's right on the left, superior at the top;
* sagittal: seen from the patient's left, anterior on the left, superior at the top.

Pixels keep their physical aspect ratio (voxel spacing in mm). Rendering uses matplotlib's Agg
canvas directly (no pyplot state), so it is safe in batch jobs and threads.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from medseg3d.errors import ShapeError
from medseg3d.io.atomic import atomic_path
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

DEFAULT_SIZE = (1200, 480)  # pixels (width, height)
_ALPHA = 0.45


def save_preview(
    image: Volume,
    labels: Volume,
    path: str | os.PathLike,
    *,
    names: Mapping[str, int] | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """Write a PNG of ``size`` pixels (width, height) with three orthogonal slices of ``image``
    (first channel) and ``labels`` overlaid in colour, with a legend of the label ``names``
    (``{name: value}``; values without a name are shown as ``label <value>``).

    ``image`` and ``labels`` must share one 3D grid (the prediction is on the input's grid).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if labels.spatial_shape != image.spatial_shape or labels.spatial_dims != 3:
        raise ShapeError(
            f"preview needs a 3D image and label map on one grid, got {image.spatial_shape} "
            f"and {labels.spatial_shape}"
        )
    intensities, affine = to_ras(image.channel_first()[0].astype(np.float32), image.affine)
    mask, _ = to_ras(np.asarray(labels.array), labels.affine)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    centre = structure_centre(mask)
    low, high = _window(intensities)

    values = [int(v) for v in np.unique(mask) if v != 0]
    value_names = {int(v): n for n, v in (names or {}).items()}
    colours = _colours(values)

    figure = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, facecolor="black")
    FigureCanvasAgg(figure)
    world = (affine @ [*centre, 1.0])[:3]  # the slices' position in RAS+ mm
    views = _views(intensities, mask, centre, spacing, world)
    for column, (name, picture, overlay, extent, sides) in enumerate(views):
        top = 0.8 if title else 0.86
        axes = figure.add_axes([column / 3 + 0.005, 0.1, 1 / 3 - 0.01, top])
        axes.set_facecolor("black")
        axes.imshow(
            picture,
            cmap="gray",
            vmin=low,
            vmax=high,
            origin="lower",
            extent=extent,
            interpolation="nearest",
        )
        rgba = np.zeros((*overlay.shape, 4), dtype=np.float32)
        for value in values:
            rgba[overlay == value] = (*colours[value], _ALPHA)
        axes.imshow(rgba, origin="lower", extent=extent, interpolation="nearest")
        axes.set_axis_off()
        axes.set_title(name, color="white", fontsize=10)
        left, right, bottom, top = sides
        style = {"color": "yellow", "fontsize": 9, "transform": axes.transAxes}
        axes.text(0.01, 0.5, left, ha="left", va="center", **style)
        axes.text(0.99, 0.5, right, ha="right", va="center", **style)
        axes.text(0.5, 0.01, bottom, ha="center", va="bottom", **style)
        axes.text(0.5, 0.99, top, ha="center", va="top", **style)
    handles = [
        Patch(color=colours[value], label=value_names.get(value, f"label {value}"))
        for value in values
    ]
    if handles:
        figure.legend(
            handles=handles,
            loc="lower center",
            ncol=min(len(handles), 8),
            frameon=False,
            labelcolor="white",
            fontsize=9,
        )
    else:
        figure.text(0.5, 0.03, "no structure segmented", color="white", ha="center", fontsize=9)
    if title:
        figure.text(0.5, 0.985, title, color="white", ha="center", va="top", fontsize=11)

    path = Path(path)
    with atomic_path(path, suffix=".png") as temp:
        figure.savefig(temp, format="png", dpi=dpi, facecolor="black")
    logger.info("wrote preview %s", path)
    return path


def to_ras(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder and flip the axes of ``array`` (X, Y, Z) to the closest RAS+ orientation.

    Returns the reoriented array and its affine; no interpolation takes place.
    """
    import nibabel as nib

    orientation = nib.orientations.io_orientation(affine)
    target = nib.orientations.axcodes2ornt(("R", "A", "S"))
    transform = nib.orientations.ornt_transform(orientation, target)
    reoriented = nib.orientations.apply_orientation(array, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, array.shape[:3])
    return np.ascontiguousarray(reoriented), new_affine


def structure_centre(labels: np.ndarray) -> tuple[int, ...]:
    """A voxel inside the largest structure (the label value with the most voxels), nearest to
    its centre of mass; the volume centre when there is no foreground."""
    counts = np.bincount(labels.ravel().astype(np.int64).clip(min=0))
    counts[0] = 0
    if counts.sum() == 0:
        return tuple(size // 2 for size in labels.shape)
    coordinates = np.argwhere(labels == int(np.argmax(counts)))
    mean = coordinates.mean(axis=0)
    nearest = coordinates[np.argmin(((coordinates - mean) ** 2).sum(axis=1))]
    return tuple(int(c) for c in nearest)


def _views(image: np.ndarray, mask: np.ndarray, centre, spacing, world):
    """(title, picture, overlay, extent in mm, side letters) per view; pictures are (rows, cols)
    for ``imshow(origin="lower")``: row 0 at the bottom."""
    x, y, z = centre
    sx, sy, sz = spacing
    nx, ny, nz = image.shape

    def flip_x(a):  # columns run from patient right (left of picture) to left
        return a[::-1]

    axial = (
        flip_x(image[:, :, z]).T,
        flip_x(mask[:, :, z]).T,
        [0, nx * sx, 0, ny * sy],
        ("R", "L", "P", "A"),
    )
    coronal = (
        flip_x(image[:, y, :]).T,
        flip_x(mask[:, y, :]).T,
        [0, nx * sx, 0, nz * sz],
        ("R", "L", "I", "S"),
    )
    sagittal = (
        image[x, ::-1, :].T,
        mask[x, ::-1, :].T,
        [0, ny * sy, 0, nz * sz],
        ("A", "P", "I", "S"),
    )
    return [
        (f"axial  S {world[2]:.1f} mm", *axial),
        (f"coronal  A {world[1]:.1f} mm", *coronal),
        (f"sagittal  R {world[0]:.1f} mm", *sagittal),
    ]


def _window(image: np.ndarray) -> tuple[float, float]:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, [0.5, 99.5])
    return float(low), float(high if high > low else low + 1)


def _colours(values: list[int]) -> dict[int, tuple[float, float, float]]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if max(values, default=0) <= 10 else "tab20"]
    return {value: tuple(palette((value - 1) % palette.N)[:3]) for value in values}
