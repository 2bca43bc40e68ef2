"""MONAI transforms for the elastic + affine deformation (:mod:`medseg3d.transforms.elastic`).

* :class:`SpatialResample` — deterministic: applies given :class:`SpatialParams`;
* :class:`RandElasticDeform` — array: draws params from ``self.R`` and applies them to
  ``(C, *spatial)``, or to a batch ``(B, C, *spatial)`` (one draw per sample, one ``grid_sample``
  for the whole batch: the fast path on a GPU);
* :class:`RandElasticDeformd` — dictionary: one draw per sample, the same deformation for every
  key, images linear and label maps nearest (see ``mode``).

With ``spatial_size`` the output is that size, centred on the input: deform a larger patch and
crop it in the same resampling, so no zero border shows. When the transform is skipped
(``prob``) the centre crop/pad is still done, exactly, without resampling. A ``MetaTensor`` 's
affine follows (``affine @ voxel_map``, per sample for a batch). MONAI's ``inverse`` undoes the
centre crop/pad of a skipped sample and raises for a resampled one (no exact inverse).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, RandomizableTransform, Transform

from medseg3d.errors import ConfigError
from medseg3d.transforms.convert import like_input, to_tensor
from medseg3d.transforms.elastic import SpatialAugment, SpatialParams
from medseg3d.transforms.invertible import CropInverse
from medseg3d.transforms.spatial import center_start, crop_map, crop_or_pad
from medseg3d.transforms.warp import apply_spatial, voxel_map

LABEL_HINTS = ("label", "seg", "mask")


def resample(
    value: Any,
    params: SpatialParams | Sequence[SpatialParams] | None,
    output_shape: Sequence[int] | None,
    *,
    kind: str,
    spacing: Sequence[float] | None = None,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Apply ``params`` to ``value`` (any array type) keeping ``MetaTensor`` metadata.

    ``params`` None (or identity) only centre-crops/pads to ``output_shape``, voxel-exact.
    """
    label = kind in ("nearest", "onehot")
    x = to_tensor(value, label=None if label else False)
    batched = params is not None and not isinstance(params, SpatialParams)
    input_shape = tuple(x.shape[2:] if batched else x.shape[1:])
    output_shape = input_shape if output_shape is None else tuple(int(n) for n in output_shape)
    if params is None or (not batched and params.is_identity):
        if output_shape == input_shape:
            return like_input(x, value)
        start = center_start(input_shape, output_shape)
        return like_input(crop_or_pad(x, start, output_shape), value, crop_map(start))
    out = apply_spatial(
        x, params, output_shape, kind=kind, spacing=spacing, padding_mode=padding_mode
    )
    if batched:  # one map per sample: a collated MetaTensor has one affine per sample
        mapping = np.stack([voxel_map(p, output_shape, input_shape, spacing) for p in params])
    else:
        mapping = voxel_map(params, output_shape, input_shape, spacing)
    return like_input(out, value, mapping)


class SpatialResample(Transform):
    """Deterministic: resample ``(C, *spatial)`` with fixed :class:`SpatialParams`."""

    def __init__(
        self,
        params: SpatialParams,
        spatial_size: Sequence[int] | None = None,
        mode: str = "linear",
        spacing: Sequence[float] | None = None,
        padding_mode: str = "zeros",
    ):
        self.params, self.spatial_size, self.mode = params, spatial_size, mode
        self.spacing, self.padding_mode = spacing, padding_mode

    def __call__(self, img: Any) -> torch.Tensor:
        return resample(
            img,
            self.params,
            self.spatial_size,
            kind=self.mode,
            spacing=self.spacing,
            padding_mode=self.padding_mode,
        )


class _ElasticBase(RandomizableTransform, CropInverse):
    def _setup(self, prob, spatial_dims, spatial_size, spacing, padding_mode, options):
        RandomizableTransform.__init__(self, prob)
        if spatial_dims is None:
            spatial_dims = 3 if spatial_size is None else len(spatial_size)
        self.augment = SpatialAugment(spatial_dims, **options)
        self.spatial_dims = self.augment.spatial_dims
        if spatial_size is not None and len(spatial_size) != self.spatial_dims:
            raise ConfigError(f"spatial_size {spatial_size} does not have {self.spatial_dims} dims")
        self.spatial_size = None if spatial_size is None else tuple(int(n) for n in spatial_size)
        self.spacing = spacing
        self.padding_mode = padding_mode
        self.params: SpatialParams | list[SpatialParams] | None = None

    def _spacing_of(self, value: Any) -> Sequence[float] | None:
        if self.spacing != "meta":
            return self.spacing
        if isinstance(value, MetaTensor):
            affine = np.asarray(value.affine, dtype=float)
            linear = affine[..., : self.spatial_dims, : self.spatial_dims]
            spacings = np.sqrt((linear**2).sum(axis=-2)).reshape(-1, self.spatial_dims)
            if not np.allclose(spacings, spacings[0], rtol=1e-4):
                raise ConfigError(
                    f"spacing='meta' on a batch needs one voxel spacing for all samples, got "
                    f"{np.round(spacings, 4).tolist()}; resample them to one spacing first"
                )
            return spacings[0]
        return None

    def _record_output(self, out: Any, value: Any) -> Any:
        """Record the centre crop/pad (and whether it resampled) for MONAI's ``inverse``."""
        if isinstance(self.params, list):  # a batch: MONAI inverts single samples
            return out
        input_shape = tuple(int(n) for n in value.shape[1:])
        start = center_start(input_shape, self.spatial_size or input_shape)
        resampled = self.params is not None and not self.params.is_identity
        return self.record_crop(out, start, input_shape, resampled=resampled)

    def randomize_for(self, value: Any) -> tuple[Sequence[int] | None, Sequence[float] | None]:
        """Draw params for ``value`` ``(C, *spatial)`` or a batch; returns (output shape, spacing)."""
        shape = tuple(int(n) for n in value.shape)
        batched = len(shape) == self.spatial_dims + 2
        output = self.spatial_size or shape[-self.spatial_dims :]
        spacing = self._spacing_of(value)
        draws = []
        for _ in range(shape[0] if batched else 1):
            RandomizableTransform.randomize(self, None)
            if self._do_transform:
                draws.append(self.augment.sample(self.R, output, spacing))
            else:
                draws.append(SpatialParams.identity(self.spatial_dims))
        self.params = draws if batched else draws[0]
        if not batched and not self._do_transform:
            self.params = None
        return output, spacing


class RandElasticDeform(_ElasticBase):
    """Random elastic + affine deformation of ``(C, *spatial)`` or ``(B, C, *spatial)``.

    Options (``num_control_points``, ``max_displacement``, ``rotate_range``, ``scale_range``,
    ``elastic_prob``…): :class:`~medseg3d.transforms.elastic.SpatialAugment`. ``spacing``: mm per
    voxel (distances in mm), ``"meta"`` (read from the MetaTensor) or None (distances in voxels).
    """

    def __init__(
        self,
        prob: float = 1.0,
        *,
        spatial_dims: int | None = None,
        spatial_size: Sequence[int] | None = None,
        mode: str = "linear",
        spacing: Sequence[float] | str | None = None,
        padding_mode: str = "zeros",
        **options: Any,
    ):
        self._setup(prob, spatial_dims, spatial_size, spacing, padding_mode, options)
        self.mode = mode

    def __call__(self, img: Any, mode: str | None = None, randomize: bool = True) -> torch.Tensor:
        spacing = self._spacing_of(img)
        if randomize:
            _, spacing = self.randomize_for(img)
        kind = mode or self.mode
        out = resample(
            img,
            self.params,
            self.spatial_size,
            kind=kind,
            spacing=spacing,
            padding_mode=self.padding_mode,
        )
        return self._record_output(out, img)

    def inverse(self, data: Any) -> Any:
        return self.undo_crop(data)


class RandElasticDeformd(_ElasticBase, MapTransform):
    """Dictionary version: the same deformation for every key (image, label, extra channels).

    ``mode``: one interpolation per key or one for all: ``"linear"`` (``"cubic"`` in 2D) for
    images, ``"nearest"`` or ``"onehot"`` for label maps. None picks ``"nearest"`` for integer
    arrays and for keys whose name contains "label", "seg" or "mask", else ``"linear"``.
    """

    def __init__(
        self,
        keys: Sequence[Hashable] | Hashable,
        prob: float = 1.0,
        *,
        spatial_dims: int | None = None,
        spatial_size: Sequence[int] | None = None,
        mode: str | Sequence[str] | None = None,
        spacing: Sequence[float] | str | None = None,
        padding_mode: str = "zeros",
        allow_missing_keys: bool = False,
        **options: Any,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        self._setup(prob, spatial_dims, spatial_size, spacing, padding_mode, options)
        modes = [mode] * len(self.keys) if mode is None or isinstance(mode, str) else list(mode)
        if len(modes) != len(self.keys):
            raise ConfigError(
                f"mode needs 1 or {len(self.keys)} entries (one per key), got {mode!r}"
            )
        self.modes = dict(zip(self.keys, modes))

    def _mode(self, key: Hashable, value: Any) -> str:
        if self.modes[key] is not None:
            return self.modes[key]
        floating = getattr(value, "dtype", None) is not None and (
            value.dtype.is_floating_point
            if isinstance(value.dtype, torch.dtype)
            else np.issubdtype(value.dtype, np.floating)
        )
        named = any(hint in str(key).lower() for hint in LABEL_HINTS)
        return "nearest" if named or not floating else "linear"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == []:
            return d
        _, spacing = self.randomize_for(d[first])
        for key in self.key_iterator(d):
            kind = self._mode(key, d[key])
            out = resample(
                d[key],
                self.params,
                self.spatial_size,
                kind=kind,
                spacing=spacing,
                padding_mode="zeros" if kind in ("nearest", "onehot") else self.padding_mode,
            )
            d[key] = self._record_output(out, d[key])
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.undo_crop(d[key])
        return d
