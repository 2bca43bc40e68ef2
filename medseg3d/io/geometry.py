"""Geometry in one place: LPS <-> RAS, ITK images <-> affines, DICOM planes <-> affines.

medseg3d keeps every affine in the NIfTI/nibabel convention: a 4x4 matrix mapping a voxel index
``(i, j, k, 1)`` (array axes in order, ``i`` the first array axis) to world coordinates in mm,
RAS+. ITK (SimpleITK, ``.mha``/``.nrrd``) and DICOM describe the same geometry in LPS+ with an
origin, a direction matrix and a spacing. The two world frames differ by negating x and y; that
flip lives here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Negates x and y: maps LPS+ world coordinates to RAS+ and back (it is its own inverse).
LPS_RAS_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])


def lps_to_ras(affine: np.ndarray) -> np.ndarray:
    """A 4x4 voxel -> LPS+ mm affine as a voxel -> RAS+ mm affine."""
    return LPS_RAS_FLIP @ np.asarray(affine, dtype=np.float64)


def ras_to_lps(affine: np.ndarray) -> np.ndarray:
    """A 4x4 voxel -> RAS+ mm affine as a voxel -> LPS+ mm affine."""
    return LPS_RAS_FLIP @ np.asarray(affine, dtype=np.float64)


def affine_from_geometry(
    origin: Sequence[float], direction: np.ndarray, spacing: Sequence[float]
) -> np.ndarray:
    """ITK-style geometry (LPS origin, direction columns, spacing in mm) -> 4x4 RAS affine.

    ``direction`` is the square matrix whose column ``d`` is the unit vector of array axis ``d``;
    2D geometry is embedded in 3D with the third axis along the plane normal.
    """
    dims = len(spacing)
    direction = np.asarray(direction, dtype=np.float64).reshape(dims, dims)
    lps = np.eye(4)
    n = min(dims, 3)
    lps[:n, :n] = direction[:n, :n] * np.asarray(spacing[:n], dtype=np.float64)
    lps[:n, 3] = np.asarray(origin[:n], dtype=np.float64)
    if n == 2:
        normal = np.cross(np.append(direction[:2, 0], 0.0), np.append(direction[:2, 1], 0.0))
        lps[:3, 2] = normal if np.linalg.norm(normal) > 0 else (0.0, 0.0, 1.0)
    return lps_to_ras(lps)


def geometry_from_affine(affine: np.ndarray) -> tuple[tuple, tuple, tuple]:
    """4x4 RAS affine -> ITK-style ``(origin, direction (flattened row-major), spacing)`` in LPS.

    Raises ``ValueError`` when the affine is sheared (ITK directions must be orthonormal).
    """
    lps = ras_to_lps(affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
        raise ValueError("the affine is sheared; ITK formats need orthonormal directions")
    return tuple(lps[:3, 3]), tuple(direction.ravel()), tuple(spacing)


def sitk_affine(image) -> np.ndarray:
    """The 4x4 RAS affine of a ``SimpleITK.Image`` (2D, 3D, or the first 3 axes of 4D)."""
    dims = image.GetDimension()
    origin = image.GetOrigin()
    spacing = image.GetSpacing()
    direction = np.asarray(image.GetDirection()).reshape(dims, dims)
    if dims > 3:
        return affine_from_geometry(origin[:3], direction[:3, :3], spacing[:3])
    return affine_from_geometry(origin, direction, spacing)


def set_sitk_geometry(image, affine: np.ndarray) -> None:
    """Give a 3D ``SimpleITK.Image`` the geometry of a 4x4 RAS affine (in place)."""
    origin, direction, spacing = geometry_from_affine(affine)
    dims = image.GetDimension()
    if dims == 2:
        image.SetOrigin(origin[:2])
        image.SetSpacing(spacing[:2])
        image.SetDirection(np.asarray(direction).reshape(3, 3)[:2, :2].ravel().tolist())
        return
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    image.SetDirection(direction)


def affine_from_dicom_plane(
    position: Sequence[float],
    orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    slice_step: Sequence[float],
) -> np.ndarray:
    """DICOM plane geometry -> 4x4 RAS affine for an array laid out ``(columns, rows, slices)``.

    ``position``: ImagePositionPatient of the first slice (LPS mm); ``orientation``:
    ImageOrientationPatient (row direction, column direction); ``pixel_spacing``: PixelSpacing
    (row spacing, column spacing) in mm; ``slice_step``: LPS vector (mm) from one slice to the next.
    """
    orientation = np.asarray(orientation, dtype=np.float64)
    row_dir, col_dir = orientation[:3], orientation[3:]
    lps = np.eye(4)
    lps[:3, 0] = row_dir * float(pixel_spacing[1])  # along a row: column index increases
    lps[:3, 1] = col_dir * float(pixel_spacing[0])  # down a column: row index increases
    lps[:3, 2] = np.asarray(slice_step, dtype=np.float64)
    lps[:3, 3] = np.asarray(position, dtype=np.float64)
    return lps_to_ras(lps)


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """Unit normal (LPS) of a DICOM plane: row direction x column direction."""
    orientation = np.asarray(orientation, dtype=np.float64)
    normal = np.cross(orientation[:3], orientation[3:])
    return normal / np.linalg.norm(normal)


def is_sheared(affine: np.ndarray, tolerance: float = 1e-4) -> bool:
    """True when the affine's axes are not mutually orthogonal (e.g. gantry tilt)."""
    columns = np.asarray(affine)[:3, :3]
    unit = columns / np.linalg.norm(columns, axis=0)
    return not np.allclose(unit.T @ unit, np.eye(3), atol=tolerance)


def orientation_codes(affine: np.ndarray) -> str:
    """Axis codes such as ``"RAS"`` or ``"LPS"``: the direction each array axis increases to."""
    import nibabel as nib

    return "".join(nib.orientations.aff2axcodes(affine))


def obliquity_degrees(affine: np.ndarray) -> float:
    """The largest angle (degrees) between a voxel axis and the nearest world axis."""
    matrix = np.asarray(affine, dtype=np.float64)[:3, :3]
    norms = np.linalg.norm(matrix, axis=0)
    if not np.all(norms > 0):
        return 0.0
    cosines = np.abs(matrix / norms).max(axis=0).clip(-1.0, 1.0)
    return float(np.degrees(np.arccos(cosines)).max())
