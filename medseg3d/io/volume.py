"""The in-memory volume: voxels, an affine in RAS+ millimetres, and metadata.

Conventions (the same as nibabel/NIfTI):

* ``array`` has the spatial axes first, ``(X, Y, Z)`` (or ``(X, Y)`` for 2D), with an optional
  trailing channel axis ``(X, Y, Z, C)`` for multi-channel or 4D inputs;
* ``affine`` is a 4x4 float64 matrix mapping a voxel index ``(i, j, k, 1)`` to world
  coordinates in mm, RAS+.

RAS+ (NIfTI, nibabel, 3D Slicer) means the world coordinate x increases towards the patient's
Right, y towards Anterior, z towards Superior. ITK and DICOM use LPS+ (x increases towards Left,
y towards Posterior, z towards Superior); the two differ by negating x and y, done once in
:mod:`medseg3d.io.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class Volume:
    """A 2D or 3D image or label map with its geometry.

    Attributes:
        array: voxels, spatial axes first, optional trailing channel axis.
        affine: 4x4 voxel-index -> RAS+ mm matrix (float64).
        meta: free metadata. Well-known keys: ``source`` (path read from), ``modality``
            (``"CT"``, ``"MR"``… when known), ``series_uid``, ``series_description``,
            ``dicom_files`` (sorted list of the slices' paths, for writing results back),
            ``sop_instance_uids``, ``is_label`` (bool).
        has_channels: True when the last axis of ``array`` is a channel axis.
    """

    array: np.ndarray
    affine: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    has_channels: bool = False

    def __post_init__(self) -> None:
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {self.affine.shape}")

    # --- shape ------------------------------------------------------------------------------
    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[:-1] if self.has_channels else self.array.shape)

    @property
    def spatial_dims(self) -> int:
        return len(self.spatial_shape)

    @property
    def num_channels(self) -> int:
        return int(self.array.shape[-1]) if self.has_channels else 1

    # --- geometry ---------------------------------------------------------------------------
    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm along each array axis (norms of the affine's columns)."""
        n = min(self.spatial_dims, 3)
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :n], axis=0))

    @property
    def orientation(self) -> tuple[str, ...]:
        """Axis codes such as ``("R", "A", "S")``: the direction each array axis increases to."""
        import nibabel as nib

        return tuple(nib.orientations.aff2axcodes(self.affine))

    @property
    def source(self) -> str | None:
        return self.meta.get("source")

    # --- views ------------------------------------------------------------------------------
    def channel_first(self) -> np.ndarray:
        """The voxels as ``(C, *spatial)``: the layout networks and transforms expect."""
        if self.has_channels:
            return np.moveaxis(self.array, -1, 0)
        return self.array[None]

    def with_array(self, array: np.ndarray, **meta: Any) -> Volume:
        """A new Volume on the same grid (same affine) with other voxels, e.g. a mask."""
        spatial = array.shape[: self.spatial_dims]
        if tuple(spatial) != self.spatial_shape:
            raise ValueError(f"array shape {array.shape} does not match grid {self.spatial_shape}")
        has_channels = array.ndim > self.spatial_dims
        return replace(
            self,
            array=array,
            affine=self.affine.copy(),
            meta={**self.meta, **meta},
            has_channels=has_channels,
        )

    def __repr__(self) -> str:
        spacing = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"Volume(shape={self.array.shape}, dtype={self.array.dtype}, spacing=({spacing}) mm, "
            f"orientation={''.join(self.orientation)}, source={self.source!r})"
        )
