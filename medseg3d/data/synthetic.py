"""Synthetic volumes for tests, the demo and ``sample_data/`` (numpy only, deterministic).

* :func:`make_ellipsoid_case`: bright ellipsoids of ``num_classes`` classes in noise, 2D or 3D;
  learnable in seconds, for training tests.
* :func:`make_ct_like_case`: a CT-like abdomen in Hounsfield units. The phantom is defined
  analytically in world (RAS+, mm) coordinates and sampled at the voxel centres of a grid with
  any spacing, axis order/flips (``orientation``) and an optional oblique rotation, so the same
  anatomy appears at the same place in the world whatever the grid: a model trained after
  reorientation and resampling must find it there.
* :func:`write_dataset`: writes cases as NIfTI plus ``dataset.json`` (MSD or nnU-Net layout).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from medseg3d.errors import ConfigError
from medseg3d.io.atomic import atomic_write_text
from medseg3d.io.volume import Volume

#: Labels of :func:`make_ct_like_case`.
CT_LABELS = {"background": 0, "liver": 1, "kidney": 2}

_AXIS_VECTORS = {
    "R": (1, 0, 0),
    "L": (-1, 0, 0),
    "A": (0, 1, 0),
    "P": (0, -1, 0),
    "S": (0, 0, 1),
    "I": (0, 0, -1),
}


def make_affine(
    shape: Sequence[int],
    spacing: Sequence[float],
    orientation: str = "RAS",
    *,
    rotation_deg: Sequence[float] = (0.0, 0.0, 0.0),
    center: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """A 4x4 voxel -> RAS+ mm affine whose grid centre lies at ``center`` (mm).

    ``orientation`` gives the direction each array axis increases towards (``"LPS"``,
    ``"PSR"``…); ``rotation_deg`` (about x, y, z, degrees) tilts the grid for an oblique
    acquisition. 2D shapes use the first two axes of a 3D affine (the third is the identity).
    """
    spatial_dims = len(shape)
    if len(spacing) != spatial_dims:
        raise ConfigError(f"spacing {tuple(spacing)} does not match shape {tuple(shape)}")
    codes = orientation.upper()
    used = [next(p for p in ("LR", "AP", "IS") if c in p) for c in codes if c in _AXIS_VECTORS]
    if len(codes) != 3 or len(used) != 3 or len(set(used)) != 3:
        raise ConfigError(
            f"orientation {orientation!r} must name each of the axes L/R, A/P, I/S once, e.g. 'RAS' or 'LPS'"
        )
    directions = np.array([_AXIS_VECTORS[c] for c in codes], dtype=np.float64).T  # columns
    directions = _rotation(rotation_deg) @ directions
    full_spacing = list(spacing) + [1.0] * (3 - spatial_dims)
    affine = np.eye(4)
    affine[:3, :3] = directions @ np.diag(full_spacing)
    full_shape = list(shape) + [1] * (3 - spatial_dims)
    middle = (np.asarray(full_shape, dtype=np.float64) - 1) / 2
    affine[:3, 3] = np.asarray(center, dtype=np.float64) - affine[:3, :3] @ middle
    return affine


def world_coordinates(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    """World (RAS+, mm) coordinates of every voxel centre: ``(3, *shape)`` float64."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    while len(grids) < 3:
        grids.append(np.zeros(tuple(shape)))
    index = np.stack(grids).reshape(3, -1)
    world = affine[:3, :3] @ index + affine[:3, 3:4]
    return world.reshape((3, *shape))


def make_ellipsoid_case(
    shape: Sequence[int] = (48, 48, 48),
    seed: int = 0,
    num_classes: int = 2,
    spacing: Sequence[float] | None = None,
    *,
    noise_std: float = 0.25,
    orientation: str = "RAS",
) -> tuple[Volume, Volume]:
    """Bright ellipsoids in Gaussian noise: ``(image, label)`` Volumes on the same grid.

    Class ``k`` (1..``num_classes`` foreground classes; background is 0) is one ellipsoid of
    intensity ``k`` in unit-free noise of std ``noise_std``; the ellipsoids do not overlap.
    Works for 2D (``shape=(64, 64)``) and 3D shapes. The image is float32, the label uint8.
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1 (foreground classes), got {num_classes}")
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in shape)
    spacing = tuple(float(s) for s in (spacing or (1.0,) * len(shape)))
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    label = np.zeros(shape, dtype=np.uint8)
    image = rng.normal(0.0, noise_std, size=shape).astype(np.float32)
    # Classes sit in slots along the first axis so that they never overlap.
    slot = shape[0] / num_classes
    for k in range(1, num_classes + 1):
        centre = [slot * (k - 0.5) + rng.uniform(-0.1, 0.1) * slot]
        centre += [n / 2 + rng.uniform(-0.15, 0.15) * n for n in shape[1:]]
        radii = [slot * rng.uniform(0.25, 0.4)]
        radii += [n * rng.uniform(0.15, 0.3) for n in shape[1:]]
        inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii)) <= 1.0
        label[inside] = k
        image[inside] += float(k)
    affine = make_affine(shape, spacing, orientation)
    meta = {"modality": "MR", "source": f"synthetic:ellipsoids(seed={seed})"}
    return (
        Volume(image, affine, dict(meta)),
        Volume(label, affine.copy(), {**meta, "is_label": True}),
    )


def make_ct_like_case(
    shape: Sequence[int] = (48, 48, 48),
    spacing: Sequence[float] = (7.0, 7.0, 5.0),
    seed: int = 0,
    oblique: bool = False,
    *,
    orientation: str = "RAS",
    noise_std: float = 12.0,
    center: Sequence[float] = (0.0, 0.0, 0.0),
) -> tuple[Volume, Volume]:
    """A CT-like abdomen in HU (int16) and its label map (uint8, :data:`CT_LABELS`).

    Air (-1000 HU) around an elliptical body (subcutaneous fat ~ -100 HU, soft tissue ~ 30 HU);
    a two-lobed liver (label 1, ~ 100 HU, portal-venous phase) on the patient's right; two kidneys
    (label 2) with a bright cortex (~ 180 HU) around the medulla (~ 50 HU); unlabelled
    distractors: spine and ribs (~ 700 HU bone) and the aorta (~ 160 HU); Gaussian noise of
    ``noise_std`` HU. Organ sizes and positions vary with ``seed`` (a few mm to ~10 %).

    The grid: ``shape`` voxels of ``spacing`` mm, axes increasing towards ``orientation``
    (e.g. ``"LPS"``), centred at ``center`` (mm, RAS+); ``oblique=True`` tilts it by 10–20 degrees.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3:
        raise ConfigError(f"make_ct_like_case builds 3D volumes; got shape {shape}")
    rng = np.random.default_rng(seed)
    rotation = (
        tuple(rng.uniform(10, 20, size=3) * rng.choice([-1, 1], size=3)) if oblique else (0, 0, 0)
    )
    affine = make_affine(shape, spacing, orientation, rotation_deg=rotation, center=center)
    x, y, z = world_coordinates(shape, affine)
    image, label = _abdomen_phantom(x, y, z, rng)
    image = image + rng.normal(0.0, noise_std, size=shape)
    image = np.clip(np.rint(image), -1024, 3071).astype(np.int16)
    meta = {"modality": "CT", "source": f"synthetic:ct_like(seed={seed})"}
    return (
        Volume(image, affine, dict(meta)),
        Volume(label.astype(np.uint8), affine.copy(), {**meta, "is_label": True}),
    )


def _abdomen_phantom(x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator):
    """HU values and labels of the phantom at world points ``x, y, z`` (mm, RAS+)."""

    def jitter(value: float, fraction: float = 0.08) -> float:
        return value * (1.0 + rng.uniform(-fraction, fraction))

    def ellipsoid(centre, radii) -> np.ndarray:
        return (
            ((x - centre[0]) / radii[0]) ** 2
            + ((y - centre[1]) / radii[1]) ** 2
            + ((z - centre[2]) / radii[2]) ** 2
        )

    shift = rng.uniform(-5, 5, size=3)
    body_a, body_b = jitter(150.0), jitter(105.0)
    body = (x / body_a) ** 2 + (y / body_b) ** 2
    hu = np.full(x.shape, -1000.0)
    label = np.zeros(x.shape, dtype=np.uint8)
    hu[body <= 1.0] = -100.0  # subcutaneous fat
    fat = jitter(14.0, 0.2)
    inner = (x / (body_a - fat)) ** 2 + (y / (body_b - fat)) ** 2
    hu[inner <= 1.0] = 30.0  # muscle / soft tissue
    # Ribs: a thin bony ring just inside the fat layer, interrupted along z and at the back.
    ring = (inner > 0.80) & (inner <= 0.90) & (np.cos(2 * np.pi * z / 28.0) > 0.35) & (y > -40)
    hu[ring] = 650.0
    # Liver (label 1): two lobes on the patient's right (+x in RAS).
    liver = (
        ellipsoid(
            (jitter(58.0) + shift[0], jitter(8.0, 0.5) + shift[1], 15.0 + shift[2]),
            (jitter(62.0), jitter(55.0), jitter(60.0)),
        )
        <= 1.0
    )
    liver |= (
        ellipsoid(
            (jitter(5.0, 1.0) + shift[0], 30.0 + shift[1], 35.0 + shift[2]),
            (jitter(38.0), jitter(25.0), jitter(28.0)),
        )
        <= 1.0
    )
    liver &= inner <= 0.9
    hu[liver] = 100.0
    label[liver] = 1
    # Kidneys (label 2): cortex brighter than medulla.
    for side in (1.0, -1.0):
        centre = (
            side * jitter(58.0) + shift[0],
            jitter(-48.0) + shift[1],
            jitter(-25.0, 0.3) + shift[2],
        )
        radii = (jitter(28.0), jitter(24.0), jitter(48.0))
        outer = ellipsoid(centre, radii)
        medulla = ellipsoid(centre, tuple(r - 7.0 for r in radii))
        kidney = (outer <= 1.0) & ~liver
        hu[kidney] = 180.0
        hu[kidney & (medulla <= 1.0)] = 50.0
        label[kidney] = 2
    # Aorta (left of the midline, in front of the spine) and the spine: unlabelled distractors.
    aorta = ((x + 18.0 - shift[0]) ** 2 + (y + 45.0 - shift[1]) ** 2) <= jitter(11.0) ** 2
    hu[aorta & (label == 0)] = 160.0
    spine_r2 = (x - shift[0]) ** 2 + (y + 78.0 - shift[1]) ** 2
    vertebra = (spine_r2 <= jitter(19.0) ** 2) & (np.cos(2 * np.pi * z / 30.0) > -0.7)
    hu[vertebra & (label == 0)] = 700.0
    hu[(spine_r2 <= 7.0**2) & (label == 0)] = 20.0  # spinal canal
    return hu, label


def write_dataset(
    folder: str | os.PathLike,
    cases: Mapping[str, tuple[Volume, Volume | None]] | Sequence[tuple[Volume, Volume | None]],
    labels: Mapping[str, int],
    layout: str = "msd",
    *,
    test_cases: Mapping[str, tuple[Volume, Volume | None]] | None = None,
    name: str = "synthetic",
    description: str = "medseg3d synthetic dataset",
    channel_names: Sequence[str] = ("CT",),
) -> Path:
    """Write ``cases`` (``{case_id: (image, label)}`` or a list) as a dataset folder.

    ``layout="msd"``: ``imagesTr/<id>.nii.gz`` (a multi-channel image is one 4D file),
    ``labelsTr/<id>.nii.gz`` and an MSD ``dataset.json``. ``layout="nnunet"``: one file per
    channel ``imagesTr/<id>_0000.nii.gz`` and an nnU-Net v2 ``dataset.json``. ``test_cases`` go
    to ``imagesTs/`` (their labels, if any, to ``labelsTs/``). Every file is written atomically.
    Returns the folder.
    """
    if layout not in ("msd", "nnunet"):
        raise ConfigError(f"layout must be 'msd' or 'nnunet', got {layout!r}")
    folder = Path(folder)
    if not isinstance(cases, Mapping):
        cases = {f"case_{i:03d}": case for i, case in enumerate(cases)}
    test_cases = dict(test_cases or {})
    training, test = [], []
    for split, items, records in (("Tr", cases, training), ("Ts", test_cases, test)):
        for case_id, (image, label) in items.items():
            if layout == "msd":
                image_rel = f"./images{split}/{case_id}.nii.gz"
                _save_nifti(image, folder / image_rel)
            else:
                image_rel = f"./images{split}/{case_id}_0000.nii.gz"
                channels = image.channel_first()
                for c in range(channels.shape[0]):
                    _save_nifti(
                        Volume(channels[c], image.affine),
                        folder / f"images{split}/{case_id}_{c:04d}.nii.gz",
                    )
            label_rel = None
            if label is not None:
                label_rel = f"./labels{split}/{case_id}.nii.gz"
                _save_nifti(label, folder / label_rel, is_label=True)
            records.append({"image": image_rel, "label": label_rel} if split == "Tr" else image_rel)
    spatial_dims = next(iter(cases.values()))[0].spatial_dims if cases else 3
    if layout == "msd":
        multichannel = any(image.has_channels for image, _ in cases.values())
        info = {
            "name": name,
            "description": description,
            "tensorImageSize": f"{spatial_dims + int(multichannel)}D",
            "modality": {str(i): c for i, c in enumerate(channel_names)},
            "labels": {str(v): k for k, v in sorted(labels.items(), key=lambda kv: kv[1])},
            "numTraining": len(training),
            "numTest": len(test),
            "training": training,
            "test": test,
        }
    else:
        info = {
            "name": name,
            "description": description,
            "channel_names": {str(i): c for i, c in enumerate(channel_names)},
            "labels": dict(sorted(labels.items(), key=lambda kv: kv[1])),
            "numTraining": len(training),
            "file_ending": ".nii.gz",
        }
    atomic_write_text(folder / "dataset.json", json.dumps(info, indent=2) + "\n")
    return folder


def _save_nifti(volume: Volume, path: Path, *, is_label: bool = False) -> None:
    """Write a Volume as NIfTI (atomically, through :func:`medseg3d.io.save_volume`)."""
    from medseg3d.io import save_volume

    save_volume(volume, path, is_label=is_label)


def _rotation(angles_deg: Sequence[float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx
