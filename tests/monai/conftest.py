"""Fixtures of the MONAI integration tests: a tiny NIfTI dataset and a tiny trained model folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg3d.data import make_ellipsoid_case, write_dataset

LABELS = {"background": 0, "small": 1, "large": 2}
SHAPE = (24, 24, 20)
SPACING = (1.5, 1.5, 2.0)


@pytest.fixture(scope="session")
def nifti_dataset(tmp_path_factory) -> Path:
    """Three tiny cases (24x24x20 voxels of 1.5x1.5x2 mm, LPS-stored) in MSD layout."""
    cases = {
        f"case{i}": make_ellipsoid_case(
            SHAPE, seed=i, num_classes=2, spacing=SPACING, orientation="LPS"
        )
        for i in range(3)
    }
    return write_dataset(
        tmp_path_factory.mktemp("monai_data"), cases, LABELS, channel_names=("MR",)
    )


@pytest.fixture(scope="session")
def model_folder(nifti_dataset, tmp_path_factory) -> Path:
    """A model folder in the format ``medseg3d train`` writes, with the dataset's own plan (the
    network is freshly initialised: these tests check plumbing and geometry, not accuracy)."""
    import torch

    from medseg3d.data import load_dataset, plan_dataset
    from medseg3d.inference.model_folder import save_model_folder
    from medseg3d.nn import build_model

    plan = plan_dataset(load_dataset(nifti_dataset))
    options = {"features": 4, "depth": 2, "deep_supervision": True}
    torch.manual_seed(0)
    model = build_model("unet", 3, 1, 3, **options)
    return save_model_folder(
        tmp_path_factory.mktemp("monai_model"),
        model=model,
        model_spec={
            "name": "unet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 3,
            "options": options,
        },
        labels=LABELS,
        plan=plan.to_dict(),
        inference={"patch_size": [16, 16, 16], "overlap": 0.5},
        config={},
    )
