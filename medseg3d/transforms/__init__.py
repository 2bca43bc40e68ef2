"""Augmentation, normalisation and patch sampling; every transform also as a MONAI transform.

Functional core on torch tensors ``(C, *spatial)``: random transforms are a settings object whose
``sample(rng, ...)`` draws parameters from a ``numpy.random.RandomState`` and whose ``apply``
(or :func:`apply_spatial`) applies them deterministically. The MONAI array and dictionary
classes (``RandElasticDeformd``, ``RandGammad``…) wrap those same functions.

The names below are loaded on first use (PEP 562): ``import medseg3d.transforms.normalize`` (as
prediction does) does not pull in MONAI, which the MONAI wrappers need and which costs seconds.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> the module that defines it
_EXPORTS = {
    "apply_spatial": "medseg3d.transforms.warp",
    "BiasField": "medseg3d.transforms.intensity",
    "build_training_transforms": "medseg3d.transforms.pipeline",
    "center_start": "medseg3d.transforms.spatial",
    "class_locations": "medseg3d.transforms.patch",
    "Contrast": "medseg3d.transforms.intensity",
    "crop_or_pad": "medseg3d.transforms.spatial",
    "crop_patch": "medseg3d.transforms.patch",
    "ct_statistics": "medseg3d.transforms.normalize",
    "displacement_field": "medseg3d.transforms.warp",
    "Flip": "medseg3d.transforms.spatial",
    "FOLD_FREE_LIMIT": "medseg3d.transforms.elastic",
    "Gamma": "medseg3d.transforms.intensity",
    "gaussian_smooth": "medseg3d.transforms.intensity",
    "GaussianBlur": "medseg3d.transforms.intensity",
    "GaussianNoise": "medseg3d.transforms.intensity",
    "initial_patch_size": "medseg3d.transforms.pipeline",
    "jacobian_determinant": "medseg3d.transforms.warp",
    "LowResolution": "medseg3d.transforms.intensity",
    "MultiplicativeBrightness": "medseg3d.transforms.intensity",
    "normalize_ct": "medseg3d.transforms.normalize",
    "NormalizeCT": "medseg3d.transforms.normalize_monai",
    "NormalizeCTd": "medseg3d.transforms.normalize_monai",
    "RandBiasField": "medseg3d.transforms.wrappers",
    "RandBiasFieldd": "medseg3d.transforms.wrappers",
    "RandBrightness": "medseg3d.transforms.wrappers",
    "RandBrightnessd": "medseg3d.transforms.wrappers",
    "RandContrast": "medseg3d.transforms.wrappers",
    "RandContrastd": "medseg3d.transforms.wrappers",
    "RandElasticDeform": "medseg3d.transforms.deform",
    "RandElasticDeformd": "medseg3d.transforms.deform",
    "RandFlip": "medseg3d.transforms.wrappers",
    "RandFlipd": "medseg3d.transforms.wrappers",
    "RandForegroundPatchd": "medseg3d.transforms.patch",
    "RandGamma": "medseg3d.transforms.wrappers",
    "RandGammad": "medseg3d.transforms.wrappers",
    "RandGaussianBlur": "medseg3d.transforms.wrappers",
    "RandGaussianBlurd": "medseg3d.transforms.wrappers",
    "RandGaussianNoise": "medseg3d.transforms.wrappers",
    "RandGaussianNoised": "medseg3d.transforms.wrappers",
    "RandLowResolution": "medseg3d.transforms.wrappers",
    "RandLowResolutiond": "medseg3d.transforms.wrappers",
    "RandRot90": "medseg3d.transforms.wrappers",
    "RandRot90d": "medseg3d.transforms.wrappers",
    "RandScaleShiftIntensity": "medseg3d.transforms.wrappers",
    "RandScaleShiftIntensityd": "medseg3d.transforms.wrappers",
    "resample": "medseg3d.transforms.deform",
    "Rot90": "medseg3d.transforms.spatial",
    "rotation_matrix": "medseg3d.transforms.elastic",
    "sample_patch_bbox": "medseg3d.transforms.patch",
    "sampling_grid": "medseg3d.transforms.warp",
    "ScaleShiftIntensity": "medseg3d.transforms.intensity",
    "SpatialAugment": "medseg3d.transforms.elastic",
    "SpatialParams": "medseg3d.transforms.elastic",
    "SpatialResample": "medseg3d.transforms.deform",
    "training_crop_size": "medseg3d.transforms.pipeline",
    "voxel_map": "medseg3d.transforms.warp",
    "zscore_nonzero": "medseg3d.transforms.normalize",
    "ZScoreNonzero": "medseg3d.transforms.normalize_monai",
    "ZScoreNonzerod": "medseg3d.transforms.normalize_monai",
}

__all__ = sorted(_EXPORTS, key=str.lower)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
