"""Inside MONAI: LoadImaged/EnsureChannelFirstd on a real NIfTI file, determinism, metadata."""

from __future__ import annotations

import pickle

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor, decollate_batch, list_data_collate
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from monai.utils import set_determinism

from medseg3d.transforms import (
    RandElasticDeform,
    RandElasticDeformd,
    RandForegroundPatchd,
    RandGammad,
    RandGaussianNoised,
    ZScoreNonzerod,
    apply_spatial,
    build_training_transforms,
    initial_patch_size,
    resample,
)

AFFINE = np.array([[-1.5, 0, 0, 20.0], [0, 1.2, 0, -30.0], [0, 0, 2.0, 5.0], [0, 0, 0, 1]])


@pytest.fixture
def nifti_case(tmp_path):
    grids = np.meshgrid(*[np.arange(n) for n in (28, 26, 20)], indexing="ij")
    distance = np.sqrt((grids[0] - 12) ** 2 + (grids[1] - 14) ** 2 + ((grids[2] - 9) * 1.3) ** 2)
    image = (np.exp(-(distance**2) / 40) * 800 + 100).astype(np.float32)
    label = ((distance < 5).astype(np.uint8) + (distance < 2.5)).astype(np.uint8)
    paths = {"image": tmp_path / "case.nii.gz", "label": tmp_path / "case_seg.nii.gz"}
    nib.save(nib.Nifti1Image(image, AFFINE), paths["image"])
    nib.save(nib.Nifti1Image(label, AFFINE), paths["label"])
    return {key: str(path) for key, path in paths.items()}


def loading(*steps):
    keys = ["image", "label"]
    return Compose([LoadImaged(keys), EnsureChannelFirstd(keys), *steps])


def centroid_world(x) -> np.ndarray:
    array = x.as_tensor()[0].double()
    grids = torch.meshgrid(
        *[torch.arange(n, dtype=torch.float64) for n in array.shape], indexing="ij"
    )
    index = [float((g * array).sum() / array.sum()) for g in grids]
    return (np.asarray(x.affine) @ np.array([*index, 1.0]))[:3]


def test_elastic_inside_compose_on_a_real_nifti(nifti_case):
    pipeline = loading(
        ZScoreNonzerod(["image"]),
        RandElasticDeformd(
            ["image", "label"],
            spatial_size=(24, 24, 16),
            rotate_range=0.3,
            scale_range=(0.9, 1.1),
            max_displacement=2.0,
        ),
        RandGaussianNoised(["image"], prob=1.0),
        RandGammad(["image"], prob=1.0),
    )
    pipeline.set_random_state(1)
    out = pipeline(nifti_case)
    image, label = out["image"], out["label"]
    assert isinstance(image, MetaTensor) and isinstance(label, MetaTensor)
    assert image.shape == (1, 24, 24, 16) and label.shape == (1, 24, 24, 16)
    assert image.dtype == torch.float32
    assert set(torch.unique(label).tolist()) <= {0, 1, 2} and (label == 2).any()
    assert image.meta["filename_or_obj"].endswith("case.nii.gz")
    pipeline.set_random_state(1)
    again = pipeline(nifti_case)
    assert torch.equal(again["image"], image) and torch.equal(again["label"], label)


def test_affine_follows_the_transform_so_anatomy_stays_put_in_the_world(nifti_case):
    loaded = loading()(nifti_case)
    transform = RandElasticDeformd(
        ["image", "label"],
        elastic_prob=0.0,
        rotate_range=0.4,
        scale_range=(0.8, 1.2),
        translate_range=3.0,
        spacing="meta",
    )
    transform.set_random_state(4)
    out = transform(loaded)
    assert not torch.allclose(out["image"].affine, loaded["image"].affine)
    np.testing.assert_allclose(
        centroid_world(out["label"].float()), centroid_world(loaded["label"].float()), atol=0.6
    )


def test_set_determinism_makes_the_training_pipeline_reproducible(nifti_case):
    outputs = []
    for _ in range(2):
        set_determinism(seed=3)
        pipeline = loading(
            build_training_transforms(3, (16, 16, 16), elastic_prob=1.0, rotate_prob=1.0)
        )
        outputs.append(pipeline(nifti_case))
    set_determinism(seed=None)
    assert torch.equal(outputs[0]["image"], outputs[1]["image"])
    assert torch.equal(outputs[0]["label"], outputs[1]["label"])


@pytest.mark.parametrize("dims", [2, 3])
def test_training_pipeline_shapes_types_and_labels(dims, rng):
    spatial = (40, 36, 30)[:dims]
    patch = (24, 20, 16)[:dims]
    image = rng.normal(0, 1, (2, *spatial)).astype(np.float32)
    label = np.zeros((1, *spatial), dtype=np.int64)
    label[(0, *[slice(5, 12)] * dims)] = 1
    label[(0, *[slice(20, 24)] * dims)] = 3
    pipeline = build_training_transforms(
        dims, patch, elastic_prob=1.0, rotate_prob=1.0, scale_prob=1.0, seed=0
    )
    pickle.loads(pickle.dumps(pipeline))  # DataLoader workers need picklable transforms
    dataset = Dataset([{"image": image, "label": label}] * 4, pipeline)
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=0)))
    assert batch["image"].shape == (4, 2, *patch) and batch["image"].dtype == torch.float32
    assert batch["label"].shape == (4, 1, *patch) and batch["label"].dtype == torch.int64
    assert set(torch.unique(batch["label"]).tolist()) <= {0, 1, 3}
    assert torch.isfinite(batch["image"]).all()


def test_initial_patch_size_covers_rotation_and_zoom():
    assert initial_patch_size((64, 64, 64)) == (64, 64, 64)
    larger = initial_patch_size((64, 64, 64), np.pi / 6, (0.7, 1.4))
    assert all(n >= 64 / 0.7 for n in larger)
    assert initial_patch_size((40, 20), np.pi, None) == (40, 40)


def test_dictionary_modes_default_to_nearest_for_labels_and_skip_is_an_exact_crop():
    image = torch.rand(1, 30, 28)
    label = (image > 0.5).float() * 4  # a float label map, recognised by its key name
    transform = RandElasticDeformd(
        ["image", "seg"], spatial_dims=2, rotate_range=0.5, max_displacement=4
    )
    transform.set_random_state(0)
    out = transform({"image": image, "seg": label})
    assert set(torch.unique(out["seg"]).tolist()) <= {0.0, 4.0}
    assert len(torch.unique(out["image"])) > 100
    skip = RandElasticDeformd(["image", "seg"], prob=0.0, spatial_size=(20, 20))
    cropped = skip({"image": MetaTensor(image), "seg": label})
    assert torch.equal(cropped["image"].as_tensor(), image[:, 5:25, 4:24])
    assert cropped["image"].affine[0, 3] == 5 and cropped["image"].affine[1, 3] == 4


def test_batched_array_transform_draws_one_deformation_per_sample():
    batch = torch.rand(1, 1, 16, 16, 16).repeat(3, 1, 1, 1, 1)
    transform = RandElasticDeform(spatial_dims=3, rotate_range=0.4, max_displacement=3)
    transform.set_random_state(2)
    out = transform(batch)
    assert out.shape == batch.shape and len(transform.params) == 3
    assert not torch.allclose(out[0], out[1])
    torch.testing.assert_close(out[2], apply_spatial(batch[2], transform.params[2]))


def test_patch_crop_moves_the_affine_origin():
    image = MetaTensor(
        torch.rand(1, 20, 20, 20), affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0]))
    )
    crop = RandForegroundPatchd(["image"], (8, 8, 8), foreground_probability=0.0)
    crop.set_random_state(0)
    out = crop({"image": image})["image"]
    start = np.asarray(out.affine)[:3, 3] / 2
    index = tuple(int(s) for s in start)
    assert torch.equal(out.as_tensor()[0, 0, 0, 0], image.as_tensor()[(0, *index)])


@pytest.mark.parametrize("channels", [(1, 2), (2, 1)], ids=["1-then-2", "2-then-1"])
def test_training_pipeline_keeps_the_channels_of_extra_keys(channels):
    image_channels, prior_channels = channels
    probabilities = {
        name: 1.0
        for name in (
            "noise_prob",
            "blur_prob",
            "bias_field_prob",
            "brightness_prob",
            "scale_shift_prob",
            "contrast_prob",
            "low_resolution_prob",
            "inverted_gamma_prob",
            "gamma_prob",
        )
    }
    pipeline = build_training_transforms(
        3, (8, 8, 8), extra_keys=["prior"], seed=0, **probabilities
    )
    for _ in range(3):
        out = pipeline(
            {
                "image": torch.rand(image_channels, 12, 12, 12),
                "prior": torch.rand(prior_channels, 12, 12, 12),
                "label": torch.zeros(1, 12, 12, 12, dtype=torch.uint8),
            }
        )
        assert out["image"].shape == (image_channels, 8, 8, 8)
        assert out["prior"].shape == (prior_channels, 8, 8, 8)
        assert torch.isfinite(out["prior"]).all()


def test_batched_metatensor_affines_follow_each_samples_deformation():
    affines = [
        torch.diag(torch.tensor([1.5, 1.0, 2.0, 1.0], dtype=torch.float64)),
        torch.tensor(
            [[0, -1.0, 0, 10], [1.2, 0, 0, -4], [0, 0, 2.0, 3], [0, 0, 0, 1]], dtype=torch.float64
        ),
    ]
    items = [{"image": MetaTensor(torch.rand(1, 14, 12, 10), affine=a)} for a in affines]
    batch = list_data_collate(items)["image"]
    for prob in (1.0, 0.0):  # deformed, then a pure centre crop
        transform = RandElasticDeform(
            prob, spatial_size=(8, 8, 6), rotate_range=0.5, scale_range=(0.8, 1.2)
        )
        transform.set_random_state(0)
        out = transform(batch)
        assert out.affine.shape == (2, 4, 4)
        for b, sample in enumerate(decollate_batch(out)):
            single = resample(items[b]["image"], transform.params[b], (8, 8, 6), kind="linear")
            torch.testing.assert_close(sample.affine, single.affine)
            torch.testing.assert_close(sample.as_tensor(), single.as_tensor(), atol=1e-5, rtol=0)
        assert not torch.allclose(out.affine[0], affines[0])  # the crop moved the origin
