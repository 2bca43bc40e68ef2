"""Ensembles and uncertainty on models whose probabilities are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from medseg3d.errors import CheckpointError, ConfigError
from medseg3d.inference import ensemble
from medseg3d.inference.model_folder import save_model_folder
from medseg3d.inference.predictor import Predictor
from medseg3d.io.volume import Volume
from medseg3d.nn import MODELS, build_model, layers

LABELS = {"background": 0, "organ": 1}


class Threshold(nn.Module):
    """Logits ``(0, slope * (x[i + shift] - threshold))`` along axis 0: class-1 probability
    ``sigmoid(slope * (x - threshold))`` for ``shift=0``, exactly, whatever the window."""

    def __init__(self, spatial_dims, in_channels, out_channels, *, threshold, slope, shift=0):
        super().__init__()
        self.size_divisor = 1
        kernel = [3] + [1] * (spatial_dims - 1)
        self.conv = layers.conv(spatial_dims, in_channels, out_channels, kernel_size=kernel)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[(1, 0, 1 + shift) + (0,) * (spatial_dims - 1)] = slope
            self.conv.bias.copy_(torch.tensor([0.0, -slope * threshold]))

    def forward(self, x):
        return self.conv(x)


def _BUILDER(spatial_dims, in_channels, out_channels, *, threshold, slope, shift=0, **_):
    return Threshold(
        spatial_dims,
        in_channels,
        out_channels,
        threshold=threshold,
        slope=slope,
        shift=shift,
    )


@pytest.fixture(autouse=True, scope="module")
def _test_model_registered():
    """The test model is in MODELS only while this module runs, never at collection."""
    with MODELS.temporary("test_ensemble_threshold", _BUILDER):
        yield


def make_model(
    folder, *, threshold, slope=0.1, spacing=(1.0, 1.0, 1.0), patch=(16, 8, 8), shift=0, labels=None
):
    labels = labels or LABELS
    options = {"threshold": float(threshold), "slope": float(slope), "shift": shift}
    return save_model_folder(
        folder,
        model=build_model("test_ensemble_threshold", 3, 1, 2, **options),
        model_spec={
            "name": "test_ensemble_threshold",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "options": options,
        },
        labels=labels,
        plan={
            "spatial_dims": 3,
            "target_spacing": list(spacing),
            "normalization": [{"scheme": "none"}],
            "patch_size": list(patch),
            "labels": labels,
            "num_channels": 1,
            "channel_names": ["CT"],
            "orientation": "RAS",
        },
        inference={"patch_size": list(patch), "overlap": 0.5},
        config={},
    )


def ramp(shape=(20, 6, 5)) -> Volume:
    """Intensity 0..100 along axis 0, constant across the other axes, on a 1 mm RAS grid."""
    values = np.linspace(0.0, 100.0, shape[0], dtype=np.float32)
    return Volume(np.broadcast_to(values[:, None, None], shape).copy(), np.eye(4))


def foreground(x, threshold, slope=0.1):
    return 1.0 / (1.0 + np.exp(-slope * (x - threshold)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    return {
        "a": make_model(root / "a", threshold=40),
        "b": make_model(root / "b", threshold=60),
        "coarse": make_model(
            root / "coarse", threshold=60, spacing=(2.0, 1.5, 1.0), patch=(8, 8, 8)
        ),
        "certain_a": make_model(root / "certain_a", threshold=40, slope=10.0),
        "certain_b": make_model(root / "certain_b", threshold=60, slope=10.0),
        "other_labels": make_model(
            root / "other", threshold=50, labels={"background": 0, "tumour": 1}
        ),
    }


def test_an_ensemble_of_one_model_is_the_model(models):
    image = ramp()
    single = Predictor(models["a"], device="cpu").predict_case(image, probabilities=True)
    one = Predictor([models["a"]], device="cpu").predict_case(image, probabilities=True)
    np.testing.assert_array_equal(one.labels.array, single.labels.array)
    np.testing.assert_array_equal(one.probabilities.array, single.probabilities.array)
    labels_only = Predictor([models["a"]], device="cpu").predict(image)
    np.testing.assert_array_equal(labels_only.array, single.labels.array)


@pytest.mark.parametrize("weights", [None, (0.7, 0.3)])
def test_two_models_average_their_probabilities(models, weights):
    image = ramp()
    x = image.array[..., None]
    w_a, w_b = weights or (0.5, 0.5)
    expected = w_a * foreground(x, 40) + w_b * foreground(x, 60)
    result = Predictor([models["a"], models["b"]], weights=weights, device="cpu").predict_case(
        image, probabilities=True
    )
    np.testing.assert_allclose(result.probabilities.array[..., 1:], expected, atol=1e-5)
    np.testing.assert_allclose(result.probabilities.array.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(result.labels.array, (expected[..., 0] > 0.5).astype(np.uint8))
    alone = [Predictor(models[k], device="cpu").predict(image).array for k in ("a", "b")]
    assert all((result.labels.array != mask).any() for mask in alone)  # differs from both
    assert result.labels.array.dtype == np.uint8 and result.labels.meta["is_label"]


def test_models_with_different_plans_average_on_the_input_grid(models):
    """A 1 mm and a 2 x 1.5 x 1 mm model with other patch sizes, on an oblique input grid."""
    affine = np.array(
        [[0.0, -0.9, 0.0, 5.0], [1.1, 0.0, 0.0, -3.0], [0.0, 0.0, 1.3, 7.0], [0, 0, 0, 1]]
    )
    image = Volume(ramp().array, affine)
    parts = [
        Predictor(models[k], device="cpu").predict_case(image, probabilities=True)
        for k in ("a", "coarse")
    ]
    expected = (parts[0].probabilities.array + parts[1].probabilities.array) / 2
    predictor = Predictor([models["a"], models["coarse"]], device="cpu")
    assert len(predictor.plans) == 2
    result = predictor.predict_case(image, probabilities=True)
    assert result.probabilities.array.shape == (*image.spatial_shape, 2)
    np.testing.assert_allclose(result.labels.affine, affine, atol=1e-6)
    np.testing.assert_allclose(result.probabilities.array, expected, atol=1e-5)
    np.testing.assert_array_equal(result.labels.array, np.argmax(expected, -1))


def test_mismatched_labels_and_bad_weights_are_refused(models):
    with pytest.raises(CheckpointError) as error:
        Predictor([models["a"], models["other_labels"]], device="cpu")
    message = str(error.value)
    assert str(models["a"]) in message and str(models["other_labels"]) in message
    assert "organ" in message and "tumour" in message and "\n" not in message
    with pytest.raises(ConfigError, match="2 weight"):
        Predictor([models["a"]], weights=[0.5, 0.5], device="cpu")
    with pytest.raises(ConfigError, match="model-weights"):
        Predictor([models["a"], models["b"]], weights=[-1, 2], device="cpu")
    with pytest.raises(ConfigError, match="two passes"):
        Predictor(models["a"], device="cpu").predict(ramp(), uncertainty="variance")


def test_uncertainty_is_zero_where_models_agree_and_high_where_they_disagree(models):
    image = ramp()
    x = image.array
    predictor = Predictor([models["certain_a"], models["certain_b"]], device="cpu")
    entropy = predictor.predict_case(image, uncertainty="entropy").uncertainty
    variance = predictor.predict_case(image, uncertainty="variance").uncertainty
    agree = (x < 35) | (x > 65)
    disagree = (x > 45) & (x < 55)
    assert agree.any() and disagree.any()
    assert entropy.array.dtype == np.float32 and entropy.spatial_shape == image.spatial_shape
    assert 0.0 <= entropy.array.min() and entropy.array.max() <= 1.0
    np.testing.assert_allclose(entropy.array[agree], 0.0, atol=1e-6)
    np.testing.assert_allclose(entropy.array[disagree], 1.0, atol=1e-5)  # (0.5, 0.5): log 2
    np.testing.assert_allclose(variance.array[agree], 0.0, atol=1e-6)
    np.testing.assert_allclose(variance.array[disagree], 0.25, atol=1e-5)  # p in {0, 1}


def test_tta_uncertainty_of_a_single_model_measures_the_mirrored_passes(tmp_path):
    """``shift=1`` looks at the next voxel along axis 0; mirrored, at the previous one."""
    folder = make_model(tmp_path / "m", threshold=50, slope=10.0, shift=1, patch=(16, 8, 8))
    image = np.zeros((12, 8, 8), dtype=np.float32)
    image[3] = 80.0  # i=2 sees it in the plain passes, i=4 in the mirrored ones
    volume = Volume(image, np.eye(4))
    predictor = Predictor(folder, device="cpu", tta=True)
    assert predictor.passes == 8
    plain = predictor.predict(volume)
    result = predictor.predict_case(volume, uncertainty="variance")
    entropy = predictor.predict_case(volume, uncertainty="entropy").uncertainty.array
    np.testing.assert_array_equal(result.labels.array, plain.array)  # the mask is unchanged
    variance = result.uncertainty.array
    split = np.zeros(image.shape, bool)
    split[[2, 4]] = True  # half the passes say organ (p = 1), half background (p = 0)
    np.testing.assert_allclose(variance[split], 0.25, atol=1e-5)
    np.testing.assert_allclose(variance[~split], 0.0, atol=1e-6)
    np.testing.assert_allclose(entropy[split], 1.0, atol=1e-5)
    np.testing.assert_allclose(entropy[~split], 0.0, atol=1e-6)


def test_float16_running_sums_give_the_same_labels(models):
    image = ramp()
    pair = [models["a"], models["b"]]
    full = Predictor(pair, device="cpu").predict_case(image, probabilities=True)
    half = Predictor(pair, device="cpu", accumulate_dtype="float16").predict_case(
        image, probabilities=True
    )
    assert half.probabilities.array.dtype == np.float32
    np.testing.assert_allclose(half.probabilities.array, full.probabilities.array, atol=2e-3)
    np.testing.assert_array_equal(half.labels.array, full.labels.array)


def test_the_accumulator_matches_numpy_for_weighted_members():
    rng = np.random.default_rng(0)
    members = [rng.dirichlet(np.ones(3), size=(17, 4, 5)).astype(np.float32) for _ in range(3)]
    weights = ensemble.normalize_weights([2.0, 1.0, 1.0], 3)
    stack = np.stack(members)
    accumulator = ensemble.ProbabilityAccumulator(squares=True)
    for probabilities, weight in zip(members, weights):
        accumulator.add(probabilities, weight, consume=True)  # the first becomes the sum
    w = np.asarray(weights)[:, None, None, None, None]
    mean = (w * stack).sum(0)
    np.testing.assert_allclose(accumulator.mean(), mean, atol=1e-6)
    variance = ((w * (stack - mean) ** 2).sum(0)).mean(-1)
    np.testing.assert_allclose(accumulator.uncertainty("variance"), variance, atol=1e-6)
    entropy = -(mean * np.log(mean)).sum(-1) / np.log(3)
    np.testing.assert_allclose(accumulator.uncertainty("entropy"), entropy, atol=1e-5)
    binary = ensemble.normalized_entropy(np.array([[0.5], [0.0], [1.0]]), "sigmoid")
    np.testing.assert_allclose(binary, [1.0, 0.0, 0.0], atol=1e-6)
