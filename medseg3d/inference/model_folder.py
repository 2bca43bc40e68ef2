"""Model folders: everything needed to segment a scan with a trained network, and nothing executable.

A model folder is written by ``medseg3d train`` (through :func:`save_model_folder`) and read by
``medseg3d predict`` (through :func:`load_model_folder`)::

    model_dir/
      model.yaml        # format: medseg3d-model, version: 1, model {name, spatial_dims,
                        # in_channels, out_channels, options}, labels {name: value}, plan {...},
                        # inference {patch_size, overlap}, config {...}, weights_sha256
      weights.pt        # the state dict only (tensors), read with torch.load(weights_only=True)
      training_log.csv  # optional

Loading never executes code from the folder: the YAML is read with ``yaml.safe_load``, the network
is rebuilt by name from :data:`medseg3d.nn.MODELS`, and the weights are read with
``weights_only=True`` after their SHA-256 was checked against ``model.yaml``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from medseg3d.errors import CheckpointError, ConfigError, MedsegError
from medseg3d.io.atomic import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

MODEL_FORMAT = "medseg3d-model"
MODEL_VERSION = 1
MODEL_FILE = "model.yaml"
WEIGHTS_FILE = "weights.pt"
_MODEL_KEYS = ("name", "spatial_dims", "in_channels", "out_channels")
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


@dataclass
class LoadedModel:
    """A model folder in memory: the network (eval mode, on its device) and its description."""

    model: nn.Module
    model_spec: dict[str, Any]
    labels: dict[str, int]
    plan: dict[str, Any]
    inference: dict[str, Any]
    config: dict[str, Any]
    path: Path
    weights_sha256: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def spatial_dims(self) -> int:
        return int(self.model_spec["spatial_dims"])

    @property
    def in_channels(self) -> int:
        return int(self.model_spec["in_channels"])

    @property
    def out_channels(self) -> int:
        return int(self.model_spec["out_channels"])

    @property
    def device(self) -> torch.device:
        parameter = next(self.model.parameters(), None)
        return parameter.device if parameter is not None else torch.device("cpu")


# --- writing ------------------------------------------------------------------------------------
def save_model_folder(
    folder: str | os.PathLike,
    *,
    model: nn.Module,
    model_spec: Mapping[str, Any],
    labels: Mapping[str, int],
    plan: Mapping[str, Any],
    inference: Mapping[str, Any],
    config: Mapping[str, Any],
    extra_files: Mapping[str, str | os.PathLike] | None = None,
) -> Path:
    """Write ``model`` and its description as a model folder; returns the folder.

    ``model_spec`` holds ``name, spatial_dims, in_channels, out_channels`` and ``options`` (the
    keyword arguments of ``build_model``); ``labels`` maps label names to values (background
    included); ``plan`` is ``Plan.to_dict()``; ``inference`` holds at least ``patch_size``
    (voxels) and ``overlap``. ``extra_files`` copies files in under the given names (e.g.
    ``{"training_log.csv": path}``). Every file is written atomically and ``model.yaml`` last, so
    a folder with a ``model.yaml`` is always complete.
    """
    folder = Path(folder)
    spec = _plain(dict(model_spec))
    missing = [key for key in _MODEL_KEYS if key not in spec]
    if missing:
        raise ConfigError(f"model_spec lacks {', '.join(missing)}; give {', '.join(_MODEL_KEYS)}")
    spec.setdefault("options", {})
    if "patch_size" not in inference:
        raise ConfigError("inference lacks patch_size (the training patch size, in voxels)")
    folder.mkdir(parents=True, exist_ok=True)

    state = {
        key: value.detach().cpu().contiguous() for key, value in _unwrap(model).state_dict().items()
    }
    with atomic_path(folder / WEIGHTS_FILE) as temp:
        torch.save(state, temp)
    for name, source in (extra_files or {}).items():
        if Path(name).name != name or name in (MODEL_FILE, WEIGHTS_FILE):
            raise ConfigError(
                f"extra file name {name!r} must be a plain file name, not {MODEL_FILE}/{WEIGHTS_FILE}"
            )
        with atomic_path(folder / name) as temp:
            shutil.copyfile(source, temp)

    document = {
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "model": spec,
        "labels": {str(name): int(value) for name, value in labels.items()},
        "plan": _plain(dict(plan)),
        "inference": _plain(dict(inference)),
        "config": _plain(dict(config)),
        "weights_sha256": file_sha256(folder / WEIGHTS_FILE),
    }
    try:
        text = yaml.safe_dump(document, sort_keys=False)
    except yaml.YAMLError as error:
        raise ConfigError(
            f"model description is not plain data ({error}); pass dicts, lists, numbers, strings"
        ) from None
    atomic_write_text(folder / MODEL_FILE, text)
    logger.info("wrote model folder %s", folder)
    return folder


# --- reading ------------------------------------------------------------------------------------
def read_model_yaml(folder: str | os.PathLike) -> dict[str, Any]:
    """The validated content of ``folder/model.yaml`` (no weights are read)."""
    folder = _folder(folder)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{MODEL_FILE} is missing; this is not a medseg3d model folder "
            "(give the folder written by `medseg3d train`)",
            path=folder,
        )
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problem = " ".join(str(error).split())
        raise CheckpointError(
            f"is not valid YAML ({problem}); re-export the model", path=path
        ) from None
    if not isinstance(document, dict) or document.get("format") != MODEL_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CheckpointError(
            f"format is {found!r}, expected {MODEL_FORMAT!r}; this file was not written by medseg3d",
            path=path,
        )
    if document.get("version") != MODEL_VERSION:
        raise CheckpointError(
            f"model folder version {document.get('version')!r} is not supported by this medseg3d "
            f"(reads version {MODEL_VERSION}); use the medseg3d release that trained it",
            path=path,
        )
    spec = document.get("model")
    if not isinstance(spec, dict) or any(key not in spec for key in _MODEL_KEYS):
        raise CheckpointError(f"'model' must give {', '.join(_MODEL_KEYS)}", path=path)
    for key in ("labels", "plan", "inference", "config"):
        if not isinstance(document.get(key) or {}, dict):
            raise CheckpointError(f"'{key}' must be a mapping", path=path)
        document[key] = dict(document.get(key) or {})
    if not document["labels"]:
        raise CheckpointError("'labels' is empty; it must map label names to values", path=path)
    bad = {
        name: value
        for name, value in document["labels"].items()
        if not isinstance(value, int) or isinstance(value, bool) or value < 0
    }
    if bad:
        raise CheckpointError(f"'labels' values must be whole numbers >= 0, got {bad}", path=path)
    if "patch_size" not in document["inference"]:
        raise CheckpointError("'inference' lacks patch_size", path=path)
    if not isinstance(document.get("weights_sha256"), str):
        raise CheckpointError(
            "weights_sha256 is missing; the weights cannot be verified", path=path
        )
    spec.setdefault("options", {})
    return document


def load_model_folder(folder: str | os.PathLike, device: str | torch.device = "cpu") -> LoadedModel:
    """Read a model folder, verify and load its weights; the model is in eval mode on ``device``.

    Raises :class:`CheckpointError` for a missing folder/file, a foreign or newer format, weights
    whose SHA-256 differs from ``model.yaml``, a file that is not a plain state dict, or a state
    dict that does not fit the architecture (missing/unexpected keys, shape mismatches).
    """
    folder = _folder(folder)
    document = read_model_yaml(folder)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(
            f"{WEIGHTS_FILE} is missing next to {MODEL_FILE}; copy the whole model folder",
            path=folder,
        )
    digest = file_sha256(weights)
    if digest != document["weights_sha256"]:
        raise CheckpointError(
            f"SHA-256 {digest[:12]}… differs from {MODEL_FILE} ({document['weights_sha256'][:12]}…): "
            "the weights were modified or replaced; restore the original model folder",
            path=weights,
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickling error for anything but tensors and containers
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(
            f"is not a plain state dict and was not loaded (it would need to run code: {reason}); "
            "only weights saved by medseg3d are accepted",
            path=weights,
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise CheckpointError(
            "does not hold a state dict (a mapping of parameter names to tensors)", path=weights
        )
    spec = document["model"]
    model = _build(spec, folder / MODEL_FILE)
    _load_state(model, _strip_wrappers(dict(state)), weights, spec["name"])
    model.to(device).eval()
    return LoadedModel(
        model=model,
        model_spec=spec,
        labels={str(name): int(value) for name, value in document["labels"].items()},
        plan=document["plan"],
        inference=document["inference"],
        config=document["config"],
        path=folder,
        weights_sha256=digest,
    )


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- helpers ------------------------------------------------------------------------------------
def _folder(folder: str | os.PathLike) -> Path:
    path = Path(folder).expanduser()
    if path.is_file() and path.name in (MODEL_FILE, WEIGHTS_FILE):
        path = path.parent
    if not path.exists():
        raise CheckpointError(
            "model folder does not exist; give the folder written by `medseg3d train` (-m DIR)",
            path=path,
        )
    if not path.is_dir():
        raise CheckpointError(
            f"is not a model folder; give the folder that holds {MODEL_FILE} and {WEIGHTS_FILE}",
            path=path,
        )
    return path


def _build(spec: Mapping[str, Any], path: Path) -> nn.Module:
    from medseg3d.nn import build_model

    options = dict(spec.get("options") or {})
    try:
        return build_model(
            spec["name"],
            int(spec["spatial_dims"]),
            int(spec["in_channels"]),
            int(spec["out_channels"]),
            **options,
        )
    except MedsegError as error:
        raise CheckpointError(f"cannot build model {spec['name']!r}: {error}", path=path) from None
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"model options do not fit {spec['name']!r}: {error}", path=path
        ) from None


def _load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path, name: str) -> None:
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(value.shape)}"
        for key, value in expected.items()
        if key in state and tuple(state[key].shape) != tuple(value.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_few(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
    if mismatched:
        problems.append(
            f"{len(mismatched)} shape mismatches (checkpoint vs model: {_few(mismatched)})"
        )
    if problems:
        raise CheckpointError(
            f"weights do not fit the {name!r} architecture described in {MODEL_FILE}: "
            + "; ".join(problems)
            + ". The weights belong to another model; use the folder they were trained with",
            path=path,
        )
    model.load_state_dict(state, strict=True)


def _few(items: list[str], limit: int = 3) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … {len(items) - limit} more" if len(items) > limit else "")


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _strip_wrappers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    for prefix in _WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix) :]: value for key, value in state.items()}
    return state


def _plain(value: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and paths into YAML-safe plain Python values."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, torch.Tensor):
        return _plain(value.tolist())
    return value
