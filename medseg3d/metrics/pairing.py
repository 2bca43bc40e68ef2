"""Pairing predictions with references for evaluation: by case name, on one grid.

Two files are one case; two folders are matched by case name (``liver_007_seg.nii.gz`` or
``liver_007_0000_seg.nii.gz`` matches the reference ``liver_007.nii.gz``). A prediction on another
grid than its reference is an error, never silently resampled.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from medseg3d.errors import ConfigError, FileNotFoundMedsegError, InputFileError, ShapeError

LABEL_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
#: Name endings dropped, in this order, when matching predictions to references.
_TAG = re.compile(r"_(seg|segmentation|pred|prediction|label|labels|gt|mask)$", re.I)
_CHANNEL = re.compile(r"_\d{4}$")


def stem(path: Path) -> str:
    """The file name without its (double) extension: ``liver_007.nii.gz`` -> ``liver_007``."""
    name = path.name
    for suffix in LABEL_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def name_variants(name: str) -> list[str]:
    """The case names a file may stand for, most specific first: ``liver_007_0000_seg`` ->
    ``[liver_007_0000_seg, liver_007_0000, liver_007]`` (a ``_seg``/``_pred``/``_gt``… tag, then
    an nnU-Net channel suffix ``_0000``, dropped)."""
    variants = [name]
    untagged = _TAG.sub("", name)
    for candidate in (untagged, _CHANNEL.sub("", untagged)):
        if candidate and candidate not in variants:
            variants.append(candidate)
    return variants


def match_cases(pred: Path, gt: Path) -> dict[str, tuple[Path, Path]]:
    """``{case: (prediction, reference)}`` for two files or two folders (matched by case name).

    A reference ``liver_007.nii.gz`` matches the prediction ``liver_007.nii.gz``, else
    ``liver_007_seg.nii.gz``, else ``liver_007_0000_seg.nii.gz``. Every reference needs a
    prediction; predictions without a reference are ignored.
    """
    for path, what in ((pred, "--pred"), (gt, "--gt")):
        if not path.exists():
            raise FileNotFoundMedsegError(f"{what} does not exist", path=path)
    if pred.is_file() and gt.is_file():
        return {stem(gt): (pred, gt)}
    if pred.is_dir() != gt.is_dir():
        raise ConfigError(f"--pred {pred} and --gt {gt} must both be files or both be folders")
    references = _label_files(gt)
    if not references:
        raise InputFileError(f"no label files ({', '.join(LABEL_SUFFIXES)}) found", path=gt)
    levels: list[dict[str, list[Path]]] = [{}, {}, {}]
    for path in _label_files(pred):
        for level, variant in enumerate(name_variants(stem(path))):
            levels[level].setdefault(variant, []).append(path)
    pairs, missing = {}, []
    for reference in references:
        case = stem(reference)
        found = None
        # a reference is only untagged (liver_007_gt -> liver_007), never cut at a 4-digit
        # suffix: case_0002 must not fall back to "case" and take case_0001's prediction
        for name in dict.fromkeys([case, _TAG.sub("", case) or case]):
            for level in levels:
                if name in level:
                    found = level[name]
                    break
            if found:
                break
        if not found:
            missing.append(case)
            continue
        if len(found) > 1:
            names = " and ".join(p.name for p in found)
            raise InputFileError(f"{names} both match case {case!r}; keep one", path=pred)
        pairs[case] = (found[0], reference)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f", … {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise InputFileError(
            f"{len(missing)} reference case(s) have no prediction in {pred} ({shown}); "
            "predict them, or evaluate a folder holding only the cases you have",
            path=gt,
        )
    return pairs


def _label_files(folder: Path) -> list[Path]:
    return [
        path
        for path in sorted(folder.iterdir())
        if path.is_file()
        and not path.name.startswith(".")
        and path.name.lower().endswith(LABEL_SUFFIXES)
    ]


def check_same_grid(pred, gt, pred_path: Path, gt_path: Path, tolerance: float) -> None:
    """Raise :class:`ShapeError` when the two label maps are not on one grid (shape, affine)."""
    if pred.spatial_shape != gt.spatial_shape:
        raise ShapeError(
            f"prediction {pred_path} has shape {pred.spatial_shape} but reference {gt_path} has "
            f"{gt.spatial_shape}; predict on the reference's grid (medseg3d predict does)"
        )
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in gt.spatial_shape], indexing="ij"))
    corners = corners.reshape(len(gt.spatial_shape), -1)
    homogeneous = np.vstack(
        [corners, np.zeros((3 - len(corners), corners.shape[1])), np.ones((1, corners.shape[1]))]
    )
    distance = float(np.abs((pred.affine - gt.affine) @ homogeneous).max())
    if distance > tolerance:
        raise ShapeError(
            f"prediction {pred_path} and reference {gt_path} lie on different grids (affines "
            f"differ by up to {distance:.4g} mm, orientation {''.join(pred.orientation)} vs "
            f"{''.join(gt.orientation)}); it is not resampled: predict on the reference's grid"
        )
