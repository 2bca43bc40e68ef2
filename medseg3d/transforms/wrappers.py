"""MONAI array and dictionary transforms around the sample/apply pairs.

One mixin holds the logic; each public class only names its settings object and default
probability. Array transforms take ``(C, *spatial)``; dictionary ones draw the parameters once
per sample and apply them to every key. Intensity parameters drawn per channel follow each key's
own channel count: they are drawn for every key from the same generator state, so keys with the
same number of channels get the same parameters and a 1-channel key gets the first channel's.
All draw only from ``self.R``, so ``set_random_state`` and ``monai.utils.set_determinism`` make
runs reproducible. Inputs may be numpy arrays, tensors or ``MetaTensor`` s; metadata is kept.

Mirroring and 90-degree rotations are MONAI ``InvertibleTransform`` s (exact ``inverse``, see
:mod:`medseg3d.transforms.invertible`), so ``Invertd`` and ``TestTimeAugmentation`` undo them.

The deterministic normalisations are in :mod:`medseg3d.transforms.normalize_monai`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform

from medseg3d.transforms import intensity, spatial
from medseg3d.transforms.convert import like_input, to_tensor
from medseg3d.transforms.invertible import ExactInverse


class _AugmentMixin(RandomizableTransform):
    augment_type: type = type(None)
    default_prob: float = 1.0
    #: exact transforms (flip, rot90) move voxels without mixing them: labels keep their dtype
    exact: bool = False

    def _setup(self, prob: float | None, options: dict[str, Any]) -> None:
        RandomizableTransform.__init__(self, self.default_prob if prob is None else prob)
        self.augment = self.augment_type(**options)
        self.params: Any = None
        self._drawn: tuple[tuple[int, ...], Any] | None = None  # (shape, generator state)

    def randomize(self, shape: Sequence[int]) -> None:  # type: ignore[override]
        super().randomize(None)
        if self._do_transform:
            shape = tuple(int(n) for n in shape)
            self._drawn = (shape, self.R.get_state())
            self.params = self.augment.sample(self.R, shape)

    def params_for(self, shape: Sequence[int]) -> Any:
        """The last draw's params for an image of ``shape``: drawn again from the same generator
        state when ``shape`` differs from the one drawn for (another key's channel count)."""
        shape = tuple(int(n) for n in shape)
        if self._drawn is None or shape == self._drawn[0]:
            return self.params
        generator = np.random.RandomState()
        generator.set_state(self._drawn[1])
        return self.augment.sample(generator, shape)

    def _apply_one(self, value: Any, params: Any) -> torch.Tensor:
        x = to_tensor(value, label=None if self.exact else False)
        if not self._do_transform:
            return like_input(x, value)
        out = self.augment.apply(x, params)
        voxel_map = self.augment.voxel_map(params, tuple(x.shape)) if self.exact else None
        return like_input(out, value, voxel_map)


class _RandArray(_AugmentMixin):
    def __init__(self, prob: float | None = None, **options: Any):
        self._setup(prob, options)

    def __call__(self, img: Any, randomize: bool = True) -> torch.Tensor:
        if randomize:
            self.randomize(img.shape)
        return self._apply_one(img, self.params)


class _RandDict(_AugmentMixin, MapTransform):
    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        prob: float | None = None,
        allow_missing_keys: bool = False,
        **options: Any,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self._setup(prob, options)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == []:
            return d
        self.randomize(d[first].shape)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self._apply_one(d[key], self.params_for(d[key].shape))
        return d


class _RandExactArray(ExactInverse, _RandArray):
    def __call__(self, img: Any, randomize: bool = True) -> torch.Tensor:
        return self.record(super().__call__(img, randomize), self.params, img.shape[1:])

    def inverse(self, data: Any) -> Any:
        return self.undo(data)


class _RandExactDict(ExactInverse, _RandDict):
    """Spatial: one draw from the first key, the same move for every key (one grid)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == []:
            return d
        self.randomize(d[first].shape)
        for key in self.key_iterator(d):
            value = d[key]
            if self._do_transform:
                value = self._apply_one(value, self.params)
            elif isinstance(value, MetaTensor):
                value = like_input(value.as_tensor(), value)  # its own record list
            d[key] = self.record(value, self.params, d[key].shape[1:])
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.undo(d[key])
        return d


# Default probabilities are nnU-Net v2's (get_training_transforms) where it has the transform.
class RandGaussianNoise(_RandArray):
    """Additive Gaussian noise on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.intensity.GaussianNoise`."""

    augment_type = intensity.GaussianNoise
    default_prob = 0.1


class RandGaussianNoised(_RandDict):
    """Additive Gaussian noise on every key of a dict; options: :class:`~medseg3d.transforms.intensity.GaussianNoise`."""

    augment_type = intensity.GaussianNoise
    default_prob = 0.1


class RandGaussianBlur(_RandArray):
    """Gaussian blur, sigma drawn per channel on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.intensity.GaussianBlur`."""

    augment_type = intensity.GaussianBlur
    default_prob = 0.2


class RandGaussianBlurd(_RandDict):
    """Gaussian blur, sigma drawn per channel on every key of a dict; options: :class:`~medseg3d.transforms.intensity.GaussianBlur`."""

    augment_type = intensity.GaussianBlur
    default_prob = 0.2


class RandBrightness(_RandArray):
    """Multiplicative brightness per channel on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.intensity.MultiplicativeBrightness`."""

    augment_type = intensity.MultiplicativeBrightness
    default_prob = 0.15


class RandBrightnessd(_RandDict):
    """Multiplicative brightness per channel on every key of a dict; options: :class:`~medseg3d.transforms.intensity.MultiplicativeBrightness`."""

    augment_type = intensity.MultiplicativeBrightness
    default_prob = 0.15


class RandContrast(_RandArray):
    """Contrast scaled about the channel mean on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.intensity.Contrast`."""

    augment_type = intensity.Contrast
    default_prob = 0.15


class RandContrastd(_RandDict):
    """Contrast scaled about the channel mean on every key of a dict; options: :class:`~medseg3d.transforms.intensity.Contrast`."""

    augment_type = intensity.Contrast
    default_prob = 0.15


class RandGamma(_RandArray):
    """Gamma on the image rescaled to [0, 1] on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.intensity.Gamma`."""

    augment_type = intensity.Gamma
    default_prob = 0.3


class RandGammad(_RandDict):
    """Gamma on the image rescaled to [0, 1] on every key of a dict; options: :class:`~medseg3d.transforms.intensity.Gamma`."""

    augment_type = intensity.Gamma
    default_prob = 0.3


class RandLowResolution(_RandArray):
    """Simulated low resolution on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.intensity.LowResolution`."""

    augment_type = intensity.LowResolution
    default_prob = 0.25


class RandLowResolutiond(_RandDict):
    """Simulated low resolution on every key of a dict; options: :class:`~medseg3d.transforms.intensity.LowResolution`."""

    augment_type = intensity.LowResolution
    default_prob = 0.25


class RandBiasField(_RandArray):
    """MRI bias field on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.intensity.BiasField`."""

    augment_type = intensity.BiasField
    default_prob = 0.1


class RandBiasFieldd(_RandDict):
    """MRI bias field on every key of a dict; options: :class:`~medseg3d.transforms.intensity.BiasField`."""

    augment_type = intensity.BiasField
    default_prob = 0.1


class RandScaleShiftIntensity(_RandArray):
    """Intensity scale and shift on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.intensity.ScaleShiftIntensity`."""

    augment_type = intensity.ScaleShiftIntensity
    default_prob = 0.1


class RandScaleShiftIntensityd(_RandDict):
    """Intensity scale and shift on every key of a dict; options: :class:`~medseg3d.transforms.intensity.ScaleShiftIntensity`."""

    augment_type = intensity.ScaleShiftIntensity
    default_prob = 0.1


class RandFlip(_RandExactArray):
    """Mirroring, each axis with its own probability on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.spatial.Flip`."""

    augment_type = spatial.Flip
    default_prob = 1.0
    exact = True


class RandFlipd(_RandExactDict):
    """Mirroring, each axis with its own probability on every key of a dict; options: :class:`~medseg3d.transforms.spatial.Flip`."""

    augment_type = spatial.Flip
    default_prob = 1.0
    exact = True


class RandRot90(_RandExactArray):
    """Rotation by a multiple of 90 degrees on ``(C, *spatial)``; options: :class:`~medseg3d.transforms.spatial.Rot90`."""

    augment_type = spatial.Rot90
    default_prob = 0.5
    exact = True


class RandRot90d(_RandExactDict):
    """Rotation by a multiple of 90 degrees on every key of a dict; options: :class:`~medseg3d.transforms.spatial.Rot90`."""

    augment_type = spatial.Rot90
    default_prob = 0.5
    exact = True
