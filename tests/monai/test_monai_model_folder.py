"""A model folder as MONAI parts in one call: geometry of the result, agreement with Predictor."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import Compose

from medseg3d.errors import CheckpointError, ShapeError
from medseg3d.inference.predictor import Predictor
from medseg3d.monai import PlanNormalized, load_model_folder_for_monai
from medseg3d.monai.transforms import PlanNormalize


def test_one_call_gives_network_inferer_and_transforms(model_folder, nifti_dataset, tmp_path):
    parts = load_model_folder_for_monai(model_folder, output_dir=tmp_path)
    assert isinstance(parts.preprocessing, Compose) and isinstance(parts.postprocessing, Compose)
    assert not parts.network.training and parts.labels["large"] == 2
    source = nifti_dataset / "imagesTr" / "case0.nii.gz"

    result = parts({"image": str(source)})
    prediction = result["pred"]
    original = nib.load(source)
    # Back on the scan's own grid (stored LPS): same shape and the same voxel -> world mapping.
    assert tuple(prediction.shape) == (1, *original.shape)
    np.testing.assert_allclose(prediction.affine.numpy(), original.affine, atol=1e-4)
    assert set(np.unique(prediction.numpy())) <= {0, 1, 2}

    written = nib.load(tmp_path / "case0_seg.nii.gz")
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-4)
    assert written.shape == original.shape

    # medseg3d predict on the same folder: the same network and plan, another resampler.
    reference = Predictor(model_folder, device="cpu").predict(str(source))
    agreement = float(np.mean(np.asarray(reference.array) == prediction.numpy()[0]))
    assert agreement > 0.9, agreement


def test_plan_normalization_matches_the_data_package(rng):
    from medseg3d.data import normalize_channel

    entries = [
        {"scheme": "ct", "clip": [-100.0, 200.0], "mean": 50.0, "std": 40.0},
        {"scheme": "zscore_nonzero"},
    ]
    image = rng.normal(0, 100, size=(2, 6, 5, 4)).astype(np.float32)
    out = PlanNormalized("image", entries)({"image": torch.from_numpy(image)})["image"]
    for channel, entry in enumerate(entries):
        np.testing.assert_allclose(
            out[channel].numpy(), normalize_channel(image[channel], entry), rtol=1e-6
        )
    with pytest.raises(ShapeError, match="channel"):
        PlanNormalize(entries)(image[:1])


def test_a_folder_that_is_not_a_model_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="model.yaml"):
        load_model_folder_for_monai(tmp_path)
