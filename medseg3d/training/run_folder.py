"""The run folder's bookkeeping: the resolved config, the dataset it trains on, the split.

``RUN_DIR/config.yaml`` (the resolved config), ``RUN_DIR/dataset.json`` (which dataset: its path,
labels, channels and case ids) and ``RUN_DIR/splits.json`` (the training and validation cases)
are written when a run starts. ``--resume`` continues exactly that run: a changed config key
(other than those in :data:`RESUMABLE_CHANGES`), another dataset, or a dataset whose labels,
channels or cases changed is refused, and the saved split is used as it is, so no case moves
between training and validation.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml

from medseg3d.data import train_val_split
from medseg3d.errors import ConfigError, MedsegError, OutputError
from medseg3d.io.atomic import atomic_write_text
from medseg3d.training.config import save_config, validate_config

logger = logging.getLogger(__name__)

RESUMABLE_CHANGES = ("training.iterations", "training.device", "data.num_workers")
DATASET_FILE = "dataset.json"
SPLITS_FILE = "splits.json"


def resolve_run_config(run_dir: Path, config: dict[str, Any], resume: bool) -> dict[str, Any]:
    saved_path = run_dir / "config.yaml"
    if resume:
        if not saved_path.is_file() or not (run_dir / "checkpoints" / "last.pt").is_file():
            raise MedsegError(
                "nothing to resume: no config.yaml and checkpoints/last.pt here; train without --resume",
                path=run_dir,
            )
        saved = yaml.safe_load(saved_path.read_text())
        changed = sorted(
            f"{section}.{key}"
            for section, values in config.items()
            for key, value in values.items()
            if saved.get(section, {}).get(key) != value
            and f"{section}.{key}" not in RESUMABLE_CHANGES
        )
        if changed:
            raise ConfigError(
                "--resume continues the saved run, but these keys differ from its config.yaml: "
                + ", ".join(changed)
                + f" (only {', '.join(RESUMABLE_CHANGES)} may change)"
            )
        validate_config(config)
        save_config(config, saved_path)
        return config
    if (run_dir / "checkpoints" / "last.pt").exists():
        raise OutputError(
            "this run folder already holds a training run; use --resume to continue it or choose another --out",
            path=run_dir,
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, saved_path)
    return config


def dataset_identity(spec) -> dict[str, Any]:
    """What makes a dataset the one a run trains on."""
    return {
        "path": str(Path(spec.root).resolve()),
        "labels": {str(k): int(v) for k, v in spec.labels.items()},
        "channel_names": list(spec.channel_names),
        "case_ids": sorted(spec.case_ids),
    }


def check_dataset(run_dir: Path, spec, resume: bool, *, write: bool = True) -> None:
    """Record the dataset of a new run; on ``--resume``, refuse another or a changed one."""
    path = run_dir / DATASET_FILE
    current = dataset_identity(spec)
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        problems = []
        for key, what in (("labels", "labels"), ("channel_names", "channels")):
            if saved.get(key) != current[key]:
                problems.append(f"{what} {saved.get(key)} -> {current[key]}")
        added = sorted(set(current["case_ids"]) - set(saved.get("case_ids", [])))
        removed = sorted(set(saved.get("case_ids", [])) - set(current["case_ids"]))
        if added or removed:
            problems.append(
                "cases "
                + ", ".join(
                    part for part in (_listed("added", added), _listed("removed", removed)) if part
                )
            )
        if problems:
            raise ConfigError(
                f"--resume continues the run on its dataset {saved.get('path')}, but --data "
                f"{current['path']} differs: {'; '.join(problems)}; resume with that dataset, "
                "or start a new run (another --out)"
            )
        if saved.get("path") != current["path"]:
            logger.info(
                "the dataset moved: %s -> %s (same labels and cases)",
                saved["path"],
                current["path"],
            )
        return
    if resume:
        logger.warning(
            "%s has no %s (an older run): the dataset cannot be checked", run_dir, DATASET_FILE
        )
    if write:
        atomic_write_text(path, json.dumps(current, indent=1) + "\n")


def splits(run_dir: Path, spec, data: dict[str, Any], resume: bool, *, write: bool = True):
    """``(train_ids, val_ids)``: the saved split on ``--resume``, else a new one (written)."""
    path = run_dir / SPLITS_FILE
    if resume and path.is_file():
        saved = json.loads(path.read_text())
        return list(saved["train"]), list(saved["val"])
    if data["num_folds"] > 1:
        if data["num_folds"] > len(spec.case_ids):
            raise ConfigError(
                f"data.num_folds={data['num_folds']} is more than the dataset's "
                f"{len(spec.case_ids)} cases; use at most {len(spec.case_ids)} folds"
            )
        train_ids, val_ids = train_val_split(spec.case_ids, data["fold"], data["num_folds"])
    else:
        train_ids, val_ids = train_val_split(spec.case_ids, "all")
    if write:
        atomic_write_text(path, json.dumps({"train": train_ids, "val": val_ids}, indent=1))
    return train_ids, val_ids


def _listed(what: str, ids: list[str]) -> str:
    if not ids:
        return ""
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return f"{what} {shown}"
