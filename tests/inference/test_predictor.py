"""Predictor on models whose output is known exactly: geometry, TTA, post-processing, DICOM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.inference.model_folder import save_model_folder
from medseg3d.inference.predictor import Predictor
from medseg3d.inference.preview import to_ras
from medseg3d.io import load_volume, save_volume, write_dicom_series
from medseg3d.io.volume import Volume
from medseg3d.nn import MODELS, build_model, layers

LABELS = {"background": 0, "organ": 1}
THRESHOLD = 50.0


class ShiftedThreshold(nn.Module):
    """Logits ``10 * (x[i + shift] - threshold)`` for class 1 (0 for class 0) along axis 0.

    ``shift=0`` is a plain threshold; ``shift=1`` looks at the next voxel, so mirroring the input
    (test-time augmentation) averages it with the previous one: a known, checkable change.
    """

    def __init__(
        self, spatial_dims, in_channels, out_channels, *, threshold=THRESHOLD, shift=0, **_
    ):
        super().__init__()
        self.size_divisor = 1
        kernel = [3] + [1] * (spatial_dims - 1)
        self.conv = layers.conv(spatial_dims, in_channels, out_channels, kernel_size=kernel)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[(1, 0, 1 + shift) + (0,) * (spatial_dims - 1)] = 10.0
            self.conv.bias.copy_(torch.tensor([0.0, -10.0 * threshold]))

    def forward(self, x):
        return self.conv(x)


def _BUILDER(spatial_dims, in_channels, out_channels, *, threshold=THRESHOLD, shift=0, **common):
    return ShiftedThreshold(
        spatial_dims, in_channels, out_channels, threshold=threshold, shift=shift
    )


@pytest.fixture(autouse=True, scope="module")
def _test_model_registered():
    """The test model is in MODELS only while this module runs, never at collection."""
    with MODELS.temporary("test_shifted_threshold", _BUILDER):
        yield


def make_model(
    folder, *, spacing, patch_size=(16, 16, 16), shift=0, labels=None, orientation="RAS"
):
    labels = labels or LABELS
    options = {"threshold": THRESHOLD, "shift": shift}
    plan = {
        "spatial_dims": 3,
        "target_spacing": [float(s) for s in spacing],
        "normalization": [{"scheme": "none"}],
        "patch_size": list(patch_size),
        "labels": labels,
        "num_channels": 1,
        "channel_names": ["CT"],
        "orientation": orientation,
    }
    return save_model_folder(
        folder,
        model=build_model("test_shifted_threshold", 3, 1, 2, **options),
        model_spec={
            "name": "test_shifted_threshold",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "options": options,
        },
        labels=labels,
        plan=plan,
        inference={"patch_size": list(patch_size), "overlap": 0.5},
        config={},
    )


def oblique_affine(spacing=(0.8, 1.1, 2.5), angle=0.5):
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    # an LPS-like axis order and a tilt around z: oblique and anisotropic
    flip = np.diag([-1.0, 1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ flip @ np.diag(spacing)
    affine[:3, 3] = [12.5, -30.0, 41.0]
    return affine


def blobs(shape=(24, 20, 12)) -> np.ndarray:
    """Intensities: background 0, a big block of 100, a small block of 80 with a cavity of 0."""
    image = np.zeros(shape, dtype=np.float32)
    image[2:12, 3:15, 2:10] = 100.0  # big structure, 960 voxels
    image[5:8, 7:10, 5:7] = 0.0  # a cavity inside it
    image[16:20, 14:18, 4:8] = 80.0  # a small, separate structure
    return image


def ras_spacing(affine):
    return np.linalg.norm(to_ras(np.zeros((2, 2, 2)), affine)[1][:3, :3], axis=0)


def test_oblique_anisotropic_nifti_gives_exact_labels_on_the_input_grid(tmp_path):
    affine = oblique_affine()
    path = save_volume(Volume(blobs(), affine), tmp_path / "scan.nii.gz")
    predictor = Predictor(make_model(tmp_path / "m", spacing=ras_spacing(affine)), device="cpu")
    mask = predictor.predict(path)
    reference = load_volume(path)
    assert mask.spatial_shape == reference.spatial_shape
    np.testing.assert_allclose(mask.affine, reference.affine, atol=1e-5)
    np.testing.assert_array_equal(mask.array, blobs() > THRESHOLD)
    assert mask.array.dtype == np.uint8 and mask.meta["is_label"]


def test_resampling_to_another_spacing_still_returns_the_input_grid(tmp_path):
    affine = oblique_affine()
    image = Volume(blobs(), affine)
    predictor = Predictor(make_model(tmp_path / "m", spacing=(1.0, 1.0, 1.0)), device="cpu")
    result = predictor.predict_case(image)
    assert result.labels.spatial_shape == image.spatial_shape
    np.testing.assert_allclose(result.labels.affine, affine, atol=1e-5)
    # two interpolations (to 1 mm and back) may move edges by up to a voxel, never more
    from scipy import ndimage

    truth = blobs() > THRESHOLD
    mask = result.labels.array.astype(bool)
    assert mask[ndimage.binary_erosion(truth, iterations=1)].all()
    assert not mask[~ndimage.binary_dilation(truth, iterations=1)].any()
    assert set(result.seconds) >= {
        "read",
        "preprocess",
        "inference",
        "restore",
        "postprocess",
        "total",
    }
    assert result.volumes["organ"]["volume_ml"] == pytest.approx(
        result.labels.array.sum() * 0.8 * 1.1 * 2.5 / 1000
    )


def test_probabilities_are_attached_and_agree_with_the_labels(tmp_path):
    affine = oblique_affine()
    predictor = Predictor(make_model(tmp_path / "m", spacing=ras_spacing(affine)), device="cpu")
    mask = predictor.predict(Volume(blobs(), affine), probabilities=True)
    probabilities = mask.meta["probabilities"]
    assert probabilities.array.shape == (*blobs().shape, 2) and probabilities.has_channels
    np.testing.assert_allclose(probabilities.array.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.argmax(probabilities.array, axis=-1), mask.array)
    np.testing.assert_allclose(probabilities.affine, affine, atol=1e-5)


def test_tta_averages_mirrored_predictions(tmp_path):
    image = np.zeros((12, 8, 8), dtype=np.float32)
    image[3] = 80.0  # column i=3 bright; its neighbours i=2 and i=4 see it
    image[8] = 30.0
    image[10] = 30.0  # i=9 has two neighbours of 30: mean 30 < 50; alone 30 < 50
    folder = make_model(tmp_path / "m", spacing=(1, 1, 1), patch_size=(16, 8, 8), shift=1)
    volume = Volume(image, np.eye(4))
    plain = Predictor(folder, device="cpu").predict(volume).array
    # without TTA: class 1 where the next voxel > 50 -> only i=2
    assert sorted(set(np.argwhere(plain)[:, 0])) == [2]
    mirrored = Predictor(folder, device="cpu", tta=True).predict(volume).array
    # with TTA: mean of next and previous voxel > 50 -> i=2 and i=4 (80/2 = 40 < 50: neither!)
    neighbours = (np.roll(image, -1, 0) + np.roll(image, 1, 0)) / 2
    neighbours[0] = image[1] / 2
    neighbours[-1] = image[-2] / 2
    np.testing.assert_array_equal(mirrored, neighbours > THRESHOLD)
    assert not mirrored.any() and plain.any()  # TTA changed the result as predicted


def test_largest_component_and_fill_holes(tmp_path):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    folder = make_model(tmp_path / "m", spacing=(1, 1, 2))
    image = Volume(blobs(), affine)
    plain = Predictor(folder, device="cpu").predict(image).array
    assert plain[17, 15, 5] == 1 and plain[6, 8, 5] == 0
    largest = Predictor(folder, device="cpu", largest_component=True).predict(image).array
    assert largest[17, 15, 5] == 0 and largest.sum() == plain.sum() - 4 * 4 * 4
    filled = (
        Predictor(folder, device="cpu", largest_component=True, fill_holes=True)
        .predict(image)
        .array
    )
    assert filled[6, 8, 5] == 1 and filled.sum() == 10 * 12 * 8


def test_dicom_series_input_and_dicom_seg_output(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    affine = oblique_affine(spacing=(0.9, 0.9, 2.0), angle=0.3)
    write_dicom_series(Volume(blobs(), affine), tmp_path / "series")
    scan = load_volume(tmp_path / "series")
    predictor = Predictor(
        make_model(tmp_path / "m", spacing=ras_spacing(scan.affine)), device="cpu"
    )
    result = predictor.predict_case(tmp_path / "series")
    assert result.labels.spatial_shape == scan.spatial_shape
    np.testing.assert_allclose(result.labels.affine, scan.affine, atol=1e-5)
    np.testing.assert_array_equal(result.labels.array, scan.array > THRESHOLD)
    written = result.save(tmp_path / "out" / "seg.dcm", format="dicom-seg")
    seg = pydicom.dcmread(written[0])
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 1
    assert seg.SegmentSequence[0].SegmentLabel == "organ"
    referenced = {
        item.ReferencedSOPInstanceUID
        for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    }
    assert referenced <= set(scan.meta["sop_instance_uids"])


def test_save_writes_labels_probabilities_and_preview(tmp_path):
    import matplotlib.image

    affine = oblique_affine()
    predictor = Predictor(make_model(tmp_path / "m", spacing=ras_spacing(affine)), device="cpu")
    result = predictor.predict_case(Volume(blobs(), affine), probabilities=True)
    paths = result.save(
        tmp_path / "o" / "seg.nii.gz",
        probabilities_path=tmp_path / "o" / "prob.nii.gz",
        preview_path=tmp_path / "o" / "p.png",
    )
    assert [p.name for p in paths] == ["seg.nii.gz", "prob.nii.gz", "p.png"]
    saved = load_volume(paths[0])
    np.testing.assert_array_equal(saved.array, result.labels.array)
    np.testing.assert_allclose(saved.affine, affine, atol=1e-5)
    assert load_volume(paths[1]).array.shape == (*blobs().shape, 2)
    assert matplotlib.image.imread(paths[2]).ndim == 3


def test_label_values_that_are_not_channel_indices(tmp_path):
    labels = {"background": 0, "liver": 6}
    folder = make_model(tmp_path / "m", spacing=(1, 1, 1), labels=labels)
    predictor = Predictor(folder, device="cpu")
    mask = predictor.predict(Volume(blobs(), np.eye(4)))
    np.testing.assert_array_equal(mask.array, np.where(blobs() > THRESHOLD, 6, 0))


def test_clear_errors_for_bad_settings_and_inputs(tmp_path):
    folder = make_model(tmp_path / "m", spacing=(1, 1, 1))
    with pytest.raises(ConfigError, match="overlap"):
        Predictor(folder, device="cpu", overlap=1.5)
    with pytest.raises(ConfigError, match="patch-size"):
        Predictor(folder, device="cpu", patch_size=[16, 16])
    with pytest.raises(ConfigError, match="device"):
        Predictor(folder, device="tpu")
    predictor = Predictor(folder, device="cpu", patch_size=32)
    assert predictor.patch_size == (32, 32, 32)
    with pytest.raises(ShapeError, match="input channel"):
        predictor.predict([Volume(blobs(), np.eye(4)), Volume(blobs(), np.eye(4))])
    with pytest.raises(ShapeError, match="3D"):
        predictor.predict(Volume(np.zeros((8, 8), np.float32), np.eye(4)))


def test_unet_model_folder_predicts_on_the_input_grid(tmp_path):
    """A real (untrained) U-Net: a larger inference patch, several windows, TTA, any output."""
    options = {"features": 4, "depth": 2}
    folder = save_model_folder(
        tmp_path / "unet",
        model=build_model("unet", 3, 1, 2, **options),
        model_spec={
            "name": "unet",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "options": options,
        },
        labels=LABELS,
        plan={
            "spatial_dims": 3,
            "target_spacing": [1.5, 1.5, 1.5],
            "normalization": [{"scheme": "zscore"}],
            "patch_size": [8, 8, 8],
            "labels": LABELS,
            "num_channels": 1,
            "channel_names": ["MR"],
        },
        inference={"patch_size": [8, 8, 8], "overlap": 0.25},
        config={},
    )
    affine = oblique_affine()
    with pytest.raises(ConfigError, match="multiples of 4"):
        Predictor(folder, device="cpu", patch_size=10)
    predictor = Predictor(folder, device="cpu", patch_size=12, tta=True)
    mask = predictor.predict(Volume(blobs(), affine))
    assert mask.spatial_shape == blobs().shape
    np.testing.assert_allclose(mask.affine, affine, atol=1e-5)
    assert set(np.unique(mask.array)) <= {0, 1}


def test_an_enlarged_patch_never_pads_a_small_scan_beyond_the_training_patch(tmp_path):
    from medseg3d.inference.member import fitted_patch

    folder = make_model(tmp_path / "m", spacing=(1, 1, 1), patch_size=(16, 16, 16))
    default = Predictor(folder, device="cpu")
    huge = Predictor(folder, device="cpu", patch_size=4096)  # no allocation of 4096^3
    member = huge.members[0]
    assert fitted_patch(member, (24, 20, 12)) == (24, 20, 16)  # covering, never below training
    assert fitted_patch(member, (5000, 20, 12)) == (4096, 20, 16)  # axes it fits stay enlarged
    scan = Volume(blobs(), oblique_affine(spacing=(1, 1, 1)))
    np.testing.assert_array_equal(huge.predict(scan).array, default.predict(scan).array)
    assert Predictor(folder, device="cpu", patch_size="32").patch_size == (32, 32, 32)
    assert Predictor(folder, device="cpu", patch_size="16x32x16").patch_size == (16, 32, 16)
    with pytest.raises(ConfigError, match="positive whole sizes"):
        Predictor(folder, device="cpu", patch_size=16.5)


def test_a_multi_label_sigmoid_model_is_refused_not_mislabelled(tmp_path):
    import yaml

    folder = make_model(tmp_path / "m", spacing=(1, 1, 1))
    description = yaml.safe_load((folder / "model.yaml").read_text())
    description["inference"]["activation"] = "sigmoid"
    (folder / "model.yaml").write_text(yaml.safe_dump(description))
    with pytest.raises(ConfigError, match="multi-label model"):
        Predictor(folder, device="cpu")
