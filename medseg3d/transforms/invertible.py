"""MONAI ``inverse`` for medseg3d's spatial transforms (what ``Invertd`` and
``TestTimeAugmentation`` call).

Each transform records what it did on the output ``MetaTensor`` 's ``applied_operations``
(MONAI's ``push_transform``); its ``inverse`` pops that record (``pop_transform``) and undoes it:

* :class:`ExactInverse` — mirroring and 90-degree rotations: voxels and affine restored exactly;
* :class:`CropInverse` — patch crops and centre crops/pads: the patch goes back to its place in a
  zero volume of the original size (the affine too); a sample that was resampled (elastic or
  affine deformation) has no exact inverse, so ``inverse`` raises
  :class:`~medseg3d.errors.ConfigError` instead of returning something wrong.

Only a ``MetaTensor`` carries the record: plain tensors and numpy arrays are transformed but
cannot be inverted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.data import MetaTensor
from monai.transforms import InvertibleTransform
from monai.utils import TraceKeys

from medseg3d.errors import ConfigError
from medseg3d.transforms.convert import like_input, to_tensor
from medseg3d.transforms.spatial import crop_map, uncrop


class _Recorded(InvertibleTransform):
    def _record(self, value: Any, extra_info: dict, input_shape: Sequence[int]) -> Any:
        """Push the record onto ``value`` (the transform's output) when it is a MetaTensor."""
        if isinstance(value, MetaTensor):
            orig_size = tuple(int(n) for n in input_shape)
            self.push_transform(value, orig_size=orig_size, extra_info=extra_info)
        return value

    def _pop_record(self, value: Any) -> dict:
        if not isinstance(value, MetaTensor):
            raise ConfigError(
                f"{type(self).__name__}.inverse needs the MetaTensor the transform returned (what "
                f"was done is recorded on it), got {type(value).__name__}"
            )
        return self.pop_transform(value)


class ExactInverse(_Recorded):
    """For transforms whose ``augment`` has ``apply``, ``voxel_map`` and ``inverse_params``
    (:class:`~medseg3d.transforms.spatial.Flip`, :class:`~medseg3d.transforms.spatial.Rot90`)."""

    augment: Any

    def record(self, value: Any, params: Any, input_shape: Sequence[int]) -> Any:
        done = getattr(self, "_do_transform", True)
        return self._record(value, {"params": params} if done else {}, input_shape)

    def undo(self, value: Any) -> Any:
        """``value`` ``(C, *spatial)`` with the most recent recorded transform undone."""
        record = self._pop_record(value)
        if not record.get(TraceKeys.DO_TRANSFORM, True):
            return value
        params = self.augment.inverse_params(record[TraceKeys.EXTRA_INFO]["params"])
        x = to_tensor(value, label=None)
        out = self.augment.apply(x, params)
        return like_input(out, value, self.augment.voxel_map(params, tuple(x.shape)))


class CropInverse(_Recorded):
    """For transforms that crop (or pad) a box starting at ``start``, possibly resampling it."""

    def record_crop(
        self,
        value: Any,
        start: Sequence[int],
        input_shape: Sequence[int],
        *,
        resampled: bool = False,
    ) -> Any:
        extra = {"start": [int(s) for s in start], "resampled": bool(resampled)}
        return self._record(value, extra, input_shape)

    def undo_crop(self, value: Any) -> Any:
        """``value`` ``(C, *spatial)`` put back at its box in a zero volume of the input's size."""
        record = self._pop_record(value)
        extra = record[TraceKeys.EXTRA_INFO]
        if extra["resampled"]:
            raise ConfigError(
                f"{type(self).__name__} resampled this sample (elastic or affine deformation), "
                "which has no exact inverse; leave it out of the transforms given to Invertd or "
                "TestTimeAugmentation (flips, 90-degree rotations and crops invert)"
            )
        start = [int(s) for s in extra["start"]]
        x = to_tensor(value, label=None)
        out = uncrop(x, start, record[TraceKeys.ORIG_SIZE])
        return like_input(out, value, crop_map([-s for s in start]))
