"""Model folders: round trip, and refusal of anything missing, tampered with, foreign or unsafe."""

from __future__ import annotations

import pickle

import pytest
import torch
import yaml
from torch import nn

from medseg3d.errors import CheckpointError
from medseg3d.inference.model_folder import (
    MODEL_FILE,
    WEIGHTS_FILE,
    file_sha256,
    load_model_folder,
    read_model_yaml,
    save_model_folder,
)
from medseg3d.nn import MODELS, build_model, layers

LABELS = {"background": 0, "organ": 1}


class ThresholdNet(nn.Module):
    """A 1x1 convolution whose logits say "class 1 where intensity > threshold"."""

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, *, threshold: float = 0.0, **_
    ):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.size_divisor = 1
        self.conv = layers.conv(spatial_dims, in_channels, out_channels, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0] = 10.0
            self.conv.bias.copy_(torch.tensor([0.0, -10.0 * threshold]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _BUILDER(spatial_dims, in_channels, out_channels, *, threshold=0.0, **common):
    return ThresholdNet(spatial_dims, in_channels, out_channels, threshold=threshold)


@pytest.fixture(autouse=True, scope="module")
def _test_model_registered():
    """The test model is in MODELS only while this module runs, never at collection."""
    with MODELS.temporary("test_threshold", _BUILDER):
        yield


def plan_dict(spacing=(1.0, 1.0, 1.0), patch_size=(16, 16, 16), scheme="none") -> dict:
    return {
        "spatial_dims": 3,
        "target_spacing": list(spacing),
        "normalization": [{"scheme": scheme}],
        "patch_size": list(patch_size),
        "labels": dict(LABELS),
        "num_channels": 1,
        "channel_names": ["CT"],
        "orientation": "RAS",
    }


def make_model_folder(
    folder, *, name="test_threshold", options=None, threshold=0.5, **plan_options
):
    options = (
        {"threshold": threshold}
        if options is None and name == "test_threshold"
        else (options or {})
    )
    model = build_model(name, 3, 1, 2, **options)
    plan = plan_dict(**plan_options)
    return save_model_folder(
        folder,
        model=model,
        model_spec={
            "name": name,
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
            "options": options,
        },
        labels=LABELS,
        plan=plan,
        inference={"patch_size": plan["patch_size"], "overlap": 0.5},
        config={"model": {"name": name}},
    )


def test_round_trip(tmp_path):
    folder = make_model_folder(tmp_path / "model", name="unet", options={"features": 4, "depth": 2})
    loaded = load_model_folder(folder)
    assert not loaded.model.training
    assert loaded.labels == LABELS and loaded.inference["patch_size"] == [16, 16, 16]
    assert loaded.model_spec["options"] == {"features": 4, "depth": 2}
    assert loaded.weights_sha256 == file_sha256(folder / WEIGHTS_FILE)
    reference = build_model("unet", 3, 1, 2, features=4, depth=2)
    assert set(loaded.model.state_dict()) == set(reference.state_dict())
    saved = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, saved[key])
    assert sorted(p.name for p in folder.iterdir()) == [MODEL_FILE, WEIGHTS_FILE]


def test_extra_files_and_model_yaml_content(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n1,0.5\n")
    folder = make_model_folder(tmp_path / "model")
    save_model_folder(
        folder,
        model=build_model("test_threshold", 3, 1, 2),
        model_spec={
            "name": "test_threshold",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
        },
        labels=LABELS,
        plan=plan_dict(),
        inference={"patch_size": (16, 16, 16), "overlap": 0.25},
        config={},
        extra_files={"training_log.csv": log},
    )
    assert (folder / "training_log.csv").read_text() == log.read_text()
    document = yaml.safe_load((folder / MODEL_FILE).read_text())
    assert document["format"] == "medseg3d-model" and document["version"] == 1
    assert document["inference"] == {"patch_size": [16, 16, 16], "overlap": 0.25}
    assert read_model_yaml(folder)["model"]["options"] == {}


def test_wrapped_models_are_saved_without_wrapper_prefixes(tmp_path):
    model = build_model("test_threshold", 3, 1, 2)
    wrapper = nn.Module()
    wrapper.module = model  # as DistributedDataParallel holds it
    folder = save_model_folder(
        tmp_path / "m",
        model=wrapper,
        model_spec={
            "name": "test_threshold",
            "spatial_dims": 3,
            "in_channels": 1,
            "out_channels": 2,
        },
        labels=LABELS,
        plan=plan_dict(),
        inference={"patch_size": [16, 16, 16]},
        config={},
    )
    assert set(torch.load(folder / WEIGHTS_FILE, weights_only=True)) == {"conv.weight", "conv.bias"}
    load_model_folder(folder)


def _refused(folder, *words):
    with pytest.raises(CheckpointError) as info:
        load_model_folder(folder)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def test_missing_folder_and_files(tmp_path):
    _refused(tmp_path / "nowhere", "does not exist")
    folder = make_model_folder(tmp_path / "model")
    (folder / WEIGHTS_FILE).unlink()
    _refused(folder, WEIGHTS_FILE, "missing")
    (folder / MODEL_FILE).unlink()
    _refused(folder, MODEL_FILE, "missing")
    file = tmp_path / "file.txt"
    file.write_text("x")
    _refused(file, "not a model folder")


def test_foreign_format_and_version(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    document = yaml.safe_load((folder / MODEL_FILE).read_text())
    (folder / MODEL_FILE).write_text(yaml.safe_dump({**document, "version": 99}))
    _refused(folder, "version 99")
    (folder / MODEL_FILE).write_text(yaml.safe_dump({**document, "format": "nnunet"}))
    _refused(folder, "'nnunet'", "not written by medseg3d")
    (folder / MODEL_FILE).write_text("model: [unclosed\n")
    _refused(folder, "not valid YAML")


def test_tampered_weights_are_refused(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    state = torch.load(folder / WEIGHTS_FILE, weights_only=True)
    state["conv.bias"] += 1.0
    torch.save(state, folder / WEIGHTS_FILE)
    _refused(folder, "SHA-256", "modified or replaced")


class _Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _replace_weights(folder, data: bytes):
    (folder / WEIGHTS_FILE).write_bytes(data)
    document = yaml.safe_load((folder / MODEL_FILE).read_text())
    document["weights_sha256"] = file_sha256(folder / WEIGHTS_FILE)  # a consistent, forged folder
    (folder / MODEL_FILE).write_text(yaml.safe_dump(document))


def test_a_pickle_with_code_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    folder = make_model_folder(tmp_path / "model")
    _replace_weights(folder, pickle.dumps({"conv.weight": _Payload(marker)}))
    # the payload really is live: plain unpickling would run it
    pickle.loads(pickle.dumps(_Payload(tmp_path / "control")))
    assert (tmp_path / "control").exists()
    _refused(folder, "not a plain state dict")
    assert not marker.exists()
    # the same through torch.save (a zip archive around the pickle)
    path = tmp_path / "evil.pt"
    torch.save({"conv.weight": _Payload(marker)}, path)
    _replace_weights(folder, path.read_bytes())
    _refused(folder, "not a plain state dict")
    assert not marker.exists()


def test_a_full_model_pickle_instead_of_a_state_dict_is_refused(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    path = tmp_path / "whole.pt"
    torch.save(build_model("test_threshold", 3, 1, 2), path)
    _replace_weights(folder, path.read_bytes())
    _refused(folder, "not a plain state dict")


def test_weights_of_another_architecture_are_refused(tmp_path):
    folder = make_model_folder(tmp_path / "model", name="unet", options={"features": 4, "depth": 2})
    other = make_model_folder(tmp_path / "other", name="unet", options={"features": 8, "depth": 2})
    _replace_weights(folder, (other / WEIGHTS_FILE).read_bytes())
    _refused(folder, "shape mismatches", "'unet'")
    threshold = make_model_folder(tmp_path / "threshold")
    _replace_weights(folder, (threshold / WEIGHTS_FILE).read_bytes())
    message = _refused(folder, "missing keys", "unexpected keys", "conv.weight")
    assert len(message) < 600


def test_not_a_state_dict(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    _replace_weights(folder, path.read_bytes())
    _refused(folder, "does not hold a state dict")


def test_unknown_model_names_and_bad_labels_are_checkpoint_errors(tmp_path):
    folder = make_model_folder(tmp_path / "model")
    document = yaml.safe_load((folder / MODEL_FILE).read_text())
    (folder / MODEL_FILE).write_text(yaml.safe_dump({**document, "labels": {"organ": "one"}}))
    _refused(folder, "whole numbers")
    document["model"]["name"] = "not_a_model"
    (folder / MODEL_FILE).write_text(yaml.safe_dump(document))
    _refused(folder, "cannot build model 'not_a_model'", "unknown model")
