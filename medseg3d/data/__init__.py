"""Datasets (MSD and nnU-Net layouts), validation, fingerprint -> plan, preprocessing with its
exact inverse, the preprocessed cache, k-fold splits, patch sampling and synthetic data.

Typical use (what ``medseg3d train`` does)::

    spec = validate_dataset(load_dataset("sample_data/ct_dataset"))
    plan = plan_dataset(spec, max_patch_voxels=64**3)
    build_cache(spec, plan, "runs/cache")
    train_ids, val_ids = train_val_split(spec.case_ids, fold=0)
    patches = PatchDataset("runs/cache", plan.patch_size, case_ids=train_ids)

and at prediction: ``case = preprocess(load_volume(path), plan)`` ... ``restore_labels(mask, case.restore)``.
"""

from medseg3d.data.cache import (
    CachedCase,
    build_cache,
    cached_case_ids,
    cached_plan,
    class_locations,
    load_cached_case,
)
from medseg3d.data.dataset import Case, DatasetSpec, load_dataset, validate_dataset
from medseg3d.data.fingerprint import Fingerprint, compute_fingerprint
from medseg3d.data.normalization import normalize_channel
from medseg3d.data.plan import Plan, fit_patch_size, make_plan, plan_dataset
from medseg3d.data.preprocess import (
    PreprocessedCase,
    RestoreInfo,
    preprocess,
    restore_labels,
    restore_probabilities,
)
from medseg3d.data.reading import read_case, read_volume
from medseg3d.data.sample import write_sample_dataset, write_sample_dicom
from medseg3d.data.splits import kfold_splits, load_splits, save_splits, train_val_split
from medseg3d.data.synthetic import (
    CT_LABELS,
    make_ct_like_case,
    make_ellipsoid_case,
    write_dataset,
)

__all__ = [
    "CT_LABELS",
    "CachedCase",
    "Case",
    "DatasetSpec",
    "Fingerprint",
    "PatchDataset",
    "Plan",
    "PreprocessedCase",
    "RestoreInfo",
    "build_cache",
    "cached_case_ids",
    "cached_plan",
    "class_locations",
    "compute_fingerprint",
    "fit_patch_size",
    "kfold_splits",
    "load_cached_case",
    "load_dataset",
    "load_splits",
    "make_ct_like_case",
    "make_ellipsoid_case",
    "make_plan",
    "normalize_channel",
    "plan_dataset",
    "preprocess",
    "read_case",
    "read_volume",
    "restore_labels",
    "restore_probabilities",
    "save_splits",
    "train_val_split",
    "validate_dataset",
    "write_dataset",
    "write_sample_dataset",
    "write_sample_dicom",
]


def __getattr__(name: str):
    # PatchDataset needs torch; import it only when asked for, so that reading, planning and
    # generating data stay light.
    if name == "PatchDataset":
        from medseg3d.data.patch_dataset import PatchDataset

        return PatchDataset
    raise AttributeError(f"module 'medseg3d.data' has no attribute {name!r}")
