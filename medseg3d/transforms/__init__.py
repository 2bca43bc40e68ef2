"""Augmentation, normalisation and patch sampling; every transform also as a MONAI transform.

Functional core on torch tensors ``(C, *spatial)``: random transforms are a settings object whose
``sample(rng, ...)`` draws parameters from a ``numpy.random.RandomState`` and whose ``apply``
(or :func:`apply_spatial`) applies them deterministically. The MONAI array and dictionary
classes (``RandElasticDeformd``, ``RandGammad``…) wrap those same functions.
"""

from medseg3d.transforms.deform import (
    RandElasticDeform,
    RandElasticDeformd,
    SpatialResample,
    resample,
)
from medseg3d.transforms.elastic import (
    FOLD_FREE_LIMIT,
    SpatialAugment,
    SpatialParams,
    rotation_matrix,
)
from medseg3d.transforms.intensity import (
    BiasField,
    Contrast,
    Gamma,
    GaussianBlur,
    GaussianNoise,
    LowResolution,
    MultiplicativeBrightness,
    ScaleShiftIntensity,
    gaussian_smooth,
)
from medseg3d.transforms.normalize import (
    NormalizeCT,
    NormalizeCTd,
    ZScoreNonzero,
    ZScoreNonzerod,
    ct_statistics,
    normalize_ct,
    zscore_nonzero,
)
from medseg3d.transforms.patch import (
    RandForegroundPatchd,
    class_locations,
    crop_patch,
    sample_patch_bbox,
)
from medseg3d.transforms.pipeline import (
    build_training_transforms,
    initial_patch_size,
    training_crop_size,
)
from medseg3d.transforms.spatial import Flip, Rot90, center_start, crop_or_pad
from medseg3d.transforms.warp import (
    apply_spatial,
    displacement_field,
    jacobian_determinant,
    sampling_grid,
    voxel_map,
)
from medseg3d.transforms.wrappers import (
    RandBiasField,
    RandBiasFieldd,
    RandBrightness,
    RandBrightnessd,
    RandContrast,
    RandContrastd,
    RandFlip,
    RandFlipd,
    RandGamma,
    RandGammad,
    RandGaussianBlur,
    RandGaussianBlurd,
    RandGaussianNoise,
    RandGaussianNoised,
    RandLowResolution,
    RandLowResolutiond,
    RandRot90,
    RandRot90d,
    RandScaleShiftIntensity,
    RandScaleShiftIntensityd,
)

__all__ = [
    "BiasField",
    "Contrast",
    "FOLD_FREE_LIMIT",
    "Flip",
    "Gamma",
    "GaussianBlur",
    "GaussianNoise",
    "LowResolution",
    "MultiplicativeBrightness",
    "NormalizeCT",
    "NormalizeCTd",
    "RandBiasField",
    "RandBiasFieldd",
    "RandBrightness",
    "RandBrightnessd",
    "RandContrast",
    "RandContrastd",
    "RandElasticDeform",
    "RandElasticDeformd",
    "RandFlip",
    "RandFlipd",
    "RandForegroundPatchd",
    "RandGamma",
    "RandGammad",
    "RandGaussianBlur",
    "RandGaussianBlurd",
    "RandGaussianNoise",
    "RandGaussianNoised",
    "RandLowResolution",
    "RandLowResolutiond",
    "RandRot90",
    "RandRot90d",
    "RandScaleShiftIntensity",
    "RandScaleShiftIntensityd",
    "Rot90",
    "ScaleShiftIntensity",
    "SpatialAugment",
    "SpatialParams",
    "SpatialResample",
    "ZScoreNonzero",
    "ZScoreNonzerod",
    "apply_spatial",
    "build_training_transforms",
    "center_start",
    "class_locations",
    "crop_or_pad",
    "crop_patch",
    "ct_statistics",
    "displacement_field",
    "gaussian_smooth",
    "initial_patch_size",
    "training_crop_size",
    "jacobian_determinant",
    "normalize_ct",
    "resample",
    "rotation_matrix",
    "sample_patch_bbox",
    "sampling_grid",
    "voxel_map",
    "zscore_nonzero",
]
