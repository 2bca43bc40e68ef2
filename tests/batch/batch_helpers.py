"""Tiny model folders and case folders for the batch tests (imported as tests.batch.batch_helpers, also by tests/cli/test_batch.py)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from medseg3d.inference.model_folder import save_model_folder
from medseg3d.nn import build_model

LABELS = {"background": 0, "organ": 1}
SHAPE = (20, 16, 12)


def make_model_folder(
    folder: Path, *, channels: int = 1, channel_names=("CT",), seed: int = 0, spacing=None
) -> Path:
    """A tiny untrained 3D U-Net (deterministic weights from ``seed``) with a hand-written plan."""
    torch.manual_seed(seed)
    options = {"features": 4, "depth": 1}
    model = build_model("unet", 3, channels, 2, **options)
    plan = {
        "spatial_dims": 3,
        "target_spacing": list(spacing or (1.5, 1.5, 2.0)),
        "normalization": [{"scheme": "zscore"}] * channels,
        "patch_size": [16, 16, 16],
        "labels": LABELS,
        "num_channels": channels,
        "channel_names": list(channel_names),
        "orientation": "RAS",
    }
    return save_model_folder(
        folder,
        model=model,
        model_spec={
            "name": "unet",
            "spatial_dims": 3,
            "in_channels": channels,
            "out_channels": 2,
            "options": options,
        },
        labels=LABELS,
        plan=plan,
        inference={"patch_size": [16, 16, 16], "overlap": 0.25},
        config={},
    )


def affine(seed: int) -> np.ndarray:
    """An anisotropic, LPS-like affine, different per case."""
    matrix = np.diag([-1.2, -1.0 - 0.1 * seed, 2.5, 1.0])
    matrix[:3, 3] = [10.0 * seed, -20.0, 5.0]
    return matrix


def image(seed: int, shape=SHAPE) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.normal(0.0, 10.0, size=shape).astype(np.float32)
    data[4:12, 3:11, 2:9] += 100.0 + 10 * seed
    return data


def write_case(path: Path, seed: int, shape=SHAPE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(image(seed, shape), affine(seed)), str(path))
    return path


def truncate(path: Path) -> Path:
    """Cut a .nii.gz in half: a corrupt file that fails on reading the voxels."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_case_folder(
    folder: Path, *, count: int = 5, corrupt: tuple[str, ...] = ("c3",), shape=SHAPE
):
    """``count`` cases ``c0..``: some in a sub-folder, the ``corrupt`` ones truncated."""
    for index in range(count):
        name = f"c{index}"
        sub = folder / ("group_b" if index % 2 else "group_a")
        path = write_case(sub / f"{name}.nii.gz", index, shape)
        if name in corrupt:
            truncate(path)
    return folder


def case_id(index: int) -> str:
    return f"group_{'b' if index % 2 else 'a'}_c{index}"


CRASH_CASE = "zz_crash"


def crashing_preparer(preparer):
    """The same preparer, but its process dies (as on a segfault) when it reads case CRASH_CASE."""
    import dataclasses

    return CrashingPreparer(
        **{f.name: getattr(preparer, f.name) for f in dataclasses.fields(preparer)}
    )


from medseg3d.batch.engine import Preparer  # noqa: E402


class CrashingPreparer(Preparer):
    def prepare(self, case):
        if case.case_id == CRASH_CASE:
            import os

            os._exit(11)
        return super().prepare(case)
