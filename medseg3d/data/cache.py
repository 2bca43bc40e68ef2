"""A disk cache of preprocessed cases, so that epochs never re-decode NIfTI.

Layout of a cache folder::

    cache.json              {"format": "medseg3d-cache", "version": 1, "plan": {...}, "cases": [...]}
    <case>.image.npy        (C, *spatial) float32, opened with np.load(mmap_mode="r")
    <case>.label.npy        (1, *spatial) uint8/int16
    <case>.locations.npz    class_<k>: (N_k, spatial_dims) int32 sampled voxel coordinates of class k
    <case>.json             {"key": ..., "restore": {...}, "classes": [...], "shape": [...]}

Every file is written atomically. A case's key hashes the plan and its input files' sizes and
modification times, so editing a file re-preprocesses that case and changing the plan
re-preprocesses all; an interrupted build resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medseg3d.data.dataset import Case, DatasetSpec
from medseg3d.data.plan import Plan
from medseg3d.data.preprocess import RestoreInfo, preprocess
from medseg3d.errors import DatasetError
from medseg3d.io.atomic import atomic_path, atomic_write_text, remove_stale_temporaries

logger = logging.getLogger(__name__)

CACHE_FORMAT = "medseg3d-cache"
CACHE_VERSION = 1
#: Per class: at most this many sampled voxel coordinates, and at least this fraction of the class.
MAX_LOCATIONS, MIN_LOCATION_FRACTION = 10_000, 0.01


@dataclass
class CachedCase:
    """A preprocessed case read back from the cache (arrays are read-only memory maps)."""

    case_id: str
    image: np.ndarray
    label: np.ndarray | None
    locations: dict[int, np.ndarray]
    restore: RestoreInfo


def case_key(case: Case, plan: Plan) -> str:
    """Hash of the cache format, the plan and the case's file names, sizes and mtimes."""
    digest = hashlib.sha256()
    digest.update(f"{CACHE_FORMAT}/{CACHE_VERSION}".encode())
    digest.update(json.dumps(plan.to_dict(), sort_keys=True).encode())
    for path in [*case.images, case.label]:
        if path is None:
            digest.update(b"no-label")
            continue
        stat = os.stat(path)
        digest.update(f"{Path(path).name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def class_locations(label: np.ndarray, seed: int = 1234) -> dict[int, np.ndarray]:
    """Sampled voxel coordinates ``(N, spatial_dims)`` int32 of every foreground class.

    As nnU-Net: at most :data:`MAX_LOCATIONS` per class, and at least 1 % of its voxels, so
    foreground oversampling can centre a patch on a class without scanning the label map.
    """
    from medseg3d.transforms.patch import class_locations as sample_locations

    label = label[0] if label.ndim > 1 and label.shape[0] == 1 else label
    locations = sample_locations(
        label,
        max_per_class=MAX_LOCATIONS,
        min_fraction=MIN_LOCATION_FRACTION,
        rng=np.random.default_rng(seed),
    )
    return {value: coords.astype(np.int32) for value, coords in locations.items()}


def build_cache(
    spec: DatasetSpec,
    plan: Plan,
    folder: str | os.PathLike,
    *,
    case_ids: list[str] | None = None,
    progress: bool = True,
) -> list[str]:
    """Preprocess every case (or ``case_ids``) of ``spec`` into ``folder`` unless up to date.

    Returns the case ids in the cache. Shows a tqdm bar when ``progress`` and something needs
    preprocessing.
    """
    from medseg3d.data.reading import read_case

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _remove_old_temporaries(folder)
    cases = spec.cases if case_ids is None else [spec.case(i) for i in case_ids]
    stale = [case for case in cases if not _is_current(folder, case, plan)]
    if stale:
        logger.info("preprocessing %d of %d cases into %s", len(stale), len(cases), folder)
    iterator = stale
    if progress and stale:
        from tqdm.auto import tqdm

        iterator = tqdm(stale, desc="preprocess", unit="case")
    for case in iterator:
        channels, label = read_case(case)
        result = preprocess(channels, plan, label)
        _write_case(folder, case, plan, result)
    index = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "plan": plan.to_dict(),
        "cases": [case.case_id for case in cases],
    }
    atomic_write_text(folder / "cache.json", json.dumps(index, indent=1) + "\n")
    return [case.case_id for case in cases]


def load_cached_case(folder: str | os.PathLike, case_id: str, *, mmap: bool = True) -> CachedCase:
    """Read one case from the cache; arrays are memory-mapped read-only when ``mmap``."""
    folder = Path(folder)
    meta_path = folder / f"{case_id}.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(
            f"case {case_id!r} is not in the cache ({error}); run build_cache", path=folder
        ) from error
    mode = "r" if mmap else None
    image = np.load(folder / f"{case_id}.image.npy", mmap_mode=mode, allow_pickle=False)
    label = None
    if meta.get("has_label"):
        label = np.load(folder / f"{case_id}.label.npy", mmap_mode=mode, allow_pickle=False)
    with np.load(folder / f"{case_id}.locations.npz", allow_pickle=False) as stored:
        locations = {int(name.split("_", 1)[1]): stored[name] for name in stored.files}
    return CachedCase(case_id, image, label, locations, RestoreInfo.from_dict(meta["restore"]))


def cached_case_ids(folder: str | os.PathLike) -> list[str]:
    """Case ids listed in ``folder/cache.json``."""
    index = _read_index(Path(folder))
    return list(index["cases"])


def cached_plan(folder: str | os.PathLike) -> Plan:
    """The plan a cache was built with."""
    return Plan.from_dict(_read_index(Path(folder))["plan"])


def _remove_old_temporaries(folder: Path, age_seconds: float = 3600.0) -> None:
    """Delete temporaries of builds killed long ago; a build running beside this one
    (several folds sharing one cache) writes its files within seconds and is left alone."""
    remove_stale_temporaries(folder, older_than=age_seconds)


def _read_index(folder: Path) -> dict[str, Any]:
    try:
        index = json.loads((folder / "cache.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(
            f"no readable cache.json ({error}); run build_cache first", path=folder
        ) from error
    if index.get("format") != CACHE_FORMAT:
        raise DatasetError("not a medseg3d cache folder (cache.json format)", path=folder)
    return index


def _is_current(folder: Path, case: Case, plan: Plan) -> bool:
    meta_path = folder / f"{case.case_id}.json"
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        key = case_key(case, plan)
    except (OSError, json.JSONDecodeError):
        return False
    files = [f"{case.case_id}.image.npy", f"{case.case_id}.locations.npz"]
    if meta.get("has_label"):
        files.append(f"{case.case_id}.label.npy")
    return meta.get("key") == key and all((folder / name).is_file() for name in files)


def _write_case(folder: Path, case: Case, plan: Plan, result) -> None:
    case_id = case.case_id
    with atomic_path(folder / f"{case_id}.image.npy") as temp:
        np.save(temp, result.image)
    locations: dict[int, np.ndarray] = {}
    if result.label is not None:
        with atomic_path(folder / f"{case_id}.label.npy") as temp:
            np.save(temp, result.label)
        locations = class_locations(result.label)
    with atomic_path(folder / f"{case_id}.locations.npz") as temp:
        np.savez(temp, **{f"class_{k}": v for k, v in locations.items()})
    meta = {
        "case_id": case_id,
        "key": case_key(case, plan),
        "shape": list(result.image.shape),
        "has_label": result.label is not None,
        "classes": sorted(locations),
        "restore": result.restore.to_dict(),
    }
    # The metadata (with the key) goes last: a case counts as cached only once all is written.
    atomic_write_text(folder / f"{case_id}.json", json.dumps(meta) + "\n")
