"""``Predictor``: one model folder, or an ensemble of several, loaded once, applied to many scans.

>>> predictor = Predictor("models/liver", device="auto")
>>> mask = predictor.predict("scans/case_001.nii.gz")      # Volume on the input's exact grid
>>> save_volume(mask, "case_001_seg.nii.gz")
>>> folds = Predictor([f"models/liver/fold_{k}" for k in range(5)])   # an ensemble
>>> result = folds.predict_case("scans/case_001.nii.gz", uncertainty="entropy")

Per scan, in public stages (``predict_case`` composes them; ``medseg3d batch`` runs them in
separate threads): :meth:`Predictor.read` (NIfTI, MHA/NRRD, DICOM folder) -> :meth:`prepare`
(exactly each model's preprocessing: orientation, spacing, normalisation from its plan) ->
:meth:`infer` (sliding windows; one model without probabilities: label-only mode, memory bounded
by one patch batch plus the label map; otherwise each model's probabilities brought back onto the
input grid and averaged) -> :meth:`restore` (label values on the input's grid) ->
:meth:`postprocess`.

The data passed between stages live in :mod:`medseg3d.inference.prediction`; one model's own
inference (sliding window, mirror passes) in :mod:`medseg3d.inference.member`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.inference import ensemble
from medseg3d.inference.device import describe_device, select_device
from medseg3d.inference.inputs import Source, read_channels
from medseg3d.inference.member import (
    Member,
    as_batch,
    load_members,
    mirror_flips,
    mirror_passes,
    sliding_window,
)
from medseg3d.inference.model_folder import LoadedModel, read_model_yaml
from medseg3d.inference.postprocess import postprocess
from medseg3d.inference.prediction import (
    Inference,
    Prediction,
    PreparedScan,
    assemble_prediction,
    prepare_scan,
)
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

Inputs = Source | Sequence[Source]
ModelDirs = str | os.PathLike | Sequence[str | os.PathLike]


class Predictor:
    """Segment scans with the model in ``model_dir``, or an ensemble of the models in a list of
    folders (their class probabilities averaged on the input grid); models are loaded once.

    Args:
        model_dir: a model folder (see :mod:`medseg3d.inference.model_folder`), or a list of
            them: an ensemble. Its members must agree on label names and values, input channels
            and dimensions; each keeps its own plan (spacing, normalisation) and patch size.
        weights: per-model weights of an ensemble (normalised to sum 1; default equal).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
        overlap: sliding-window overlap in [0, 1); default: each model folder's.
        batch_size: patches per forward pass.
        tta: test-time augmentation, averaging over mirrored inputs (2**spatial_dims passes,
            over the axes the model was trained to mirror when ``inference.mirror_axes`` says).
        patch_size: inference patch in voxels (default: each model's training patch); a larger
            patch means fewer windows. Must be a multiple of every network's size divisor.
        progress: show a progress bar over the windows.
        largest_component: keep only the largest connected component of each class (``True``)
            or of the given label values.
        fill_holes: fill enclosed holes of each class (``True``) or of the given label values.
        accumulate_dtype: ``"float32"`` or ``"float16"``: the running sums of an ensemble (half
            the memory, about 1e-3 precision).
    """

    def __init__(
        self,
        model_dir: ModelDirs,
        *,
        weights: Sequence[float] | None = None,
        device: str | torch.device = "auto",
        overlap: float | None = None,
        batch_size: int = 4,
        tta: bool = False,
        patch_size: int | Sequence[int] | None = None,
        progress: bool = False,
        largest_component: bool | Sequence[int] = False,
        fill_holes: bool | Sequence[int] = False,
        accumulate_dtype: str = "float32",
    ):
        folders = _folders(model_dir)
        ensemble.check_members_agree([(path, read_model_yaml(path)) for path in folders])
        member_weights = ensemble.normalize_weights(weights, len(folders))

        import medseg3d.data.preprocess
        import medseg3d.transforms  # noqa: F401  (imported by preprocessing; load it once, here)

        if overlap is not None and not 0.0 <= float(overlap) < 1.0:
            raise ConfigError(f"--overlap must be in [0, 1), got {overlap}")
        if int(batch_size) < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
        self.accumulate_dtype = ensemble.accumulate_dtype(accumulate_dtype)
        self.device = select_device(device)
        self.device_description = describe_device(self.device)
        self.batch_size = int(batch_size)
        self.tta = bool(tta)
        self.progress = progress
        self.largest_component = largest_component
        self.fill_holes = fill_holes
        self.members, self.plans = load_members(
            folders, member_weights, self.device, overlap=overlap, patch_size=patch_size
        )
        first = self.members[0]
        self.channels = ensemble.output_layout(
            [m.loaded.out_channels for m in self.members], [m.activation for m in self.members]
        )
        # the first model's description (single-model attributes kept for existing callers)
        self.loaded: LoadedModel = first.loaded
        self.model_dir = first.path
        self.model_dirs = [m.path for m in self.members]
        self.weights = tuple(m.weight for m in self.members)
        self.plan = self.plans[0]
        self.labels = dict(first.loaded.labels)
        self.spatial_dims = first.loaded.spatial_dims
        self.overlap = first.overlap
        self.patch_size = first.patch_size
        self.activation = (
            first.activation if self.channels == first.loaded.out_channels else "softmax"
        )
        self._values = max((m.values for m in self.members), key=len)

    @property
    def is_ensemble(self) -> bool:
        return len(self.members) > 1

    # --- one call -----------------------------------------------------------------------------
    def predict(
        self,
        image: Inputs,
        *,
        series: str | None = None,
        probabilities: bool = False,
        uncertainty: str | None = None,
        allow_irregular: bool = False,
    ) -> Volume:
        """The label map of ``image`` (a path, a Volume, or one per input channel) on its exact
        grid. With ``probabilities=True`` the class probabilities ``(*spatial, C)`` float32 are
        attached as ``result.meta["probabilities"]`` (a Volume on the same grid); with
        ``uncertainty`` (``"entropy"`` or ``"variance"``) the map as ``meta["uncertainty"]``.
        ``allow_irregular``: read a DICOM stack with missing slices, uneven gaps or gantry tilt by
        resampling it onto a regular grid (the mask is then on that grid)."""
        result = self.predict_case(
            image,
            series=series,
            probabilities=probabilities,
            uncertainty=uncertainty,
            allow_irregular=allow_irregular,
        )
        if result.probabilities is not None:
            result.labels.meta["probabilities"] = result.probabilities
        if result.uncertainty is not None:
            result.labels.meta["uncertainty"] = result.uncertainty
        return result.labels

    def predict_case(
        self,
        image: Inputs,
        *,
        series: str | None = None,
        probabilities: bool = False,
        uncertainty: str | None = None,
        allow_irregular: bool = False,
    ) -> Prediction:
        """Everything about one prediction: labels, probabilities, uncertainty, the input,
        volumes, timing: :meth:`read` -> :meth:`prepare` -> :meth:`infer` -> :meth:`restore` ->
        :meth:`postprocess`."""
        ensemble.check_uncertainty(uncertainty, self.passes)
        seconds: dict[str, float] = {}
        start = clock = time.perf_counter()
        channels = self.read(image, series, allow_irregular=allow_irregular)
        seconds["read"], clock = _lap(clock)
        prepared = self.prepare(channels)
        seconds["preprocess"], clock = _lap(clock)
        inference = self.infer(prepared, probabilities=probabilities, uncertainty=uncertainty)
        prepared.images = []  # the preprocessed images are not needed any more: free them
        seconds["inference"], clock = _lap(clock)
        array = self.restore(prepared, inference)
        seconds["restore"], clock = _lap(clock)
        array = self.postprocess(array)
        seconds["postprocess"], clock = _lap(clock)

        seconds["total"] = time.perf_counter() - start
        return assemble_prediction(
            channels[0],
            array,
            inference,
            names=self.labels,
            class_values=self._values,
            device=self.device_description,
            seconds=seconds,
        )

    # --- stages -------------------------------------------------------------------------------
    def read(
        self, image: Inputs, series: str | None = None, *, allow_irregular: bool = False
    ) -> list[Volume]:
        """The input as one single-channel Volume per model input channel
        (:func:`~medseg3d.inference.inputs.read_channels`). Raises for NaN/Inf voxels, the wrong
        number of channels or dimensions."""
        sources = list(image) if isinstance(image, (list, tuple)) else [image]
        volumes = read_channels(
            sources,
            self.loaded.in_channels,
            self.plan.channel_names,
            series=series,
            allow_irregular=allow_irregular,
        )
        if volumes[0].spatial_dims != self.spatial_dims:
            raise ShapeError(
                f"the model is {self.spatial_dims}D but the input is {volumes[0].spatial_dims}D",
                path=volumes[0].source,
            )
        return volumes

    def prepare(self, channels: Sequence[Volume]) -> PreparedScan:
        """Preprocess the channels (from :meth:`read`) for every distinct plan of the models
        (folds of one cross-validation share theirs: preprocessed once)."""
        return prepare_scan(channels, self.plans)

    def infer(
        self,
        prepared: PreparedScan,
        *,
        probabilities: bool = False,
        uncertainty: str | None = None,
        stitch_device: str | torch.device | None = None,
    ) -> Inference:
        """Sliding-window inference of every model.

        One model without probabilities or uncertainty: label-only mode, label indices on the
        preprocessed grid (stitched on the compute device, a byte per voxel; ``stitch_device``
        overrides). Otherwise every model's probabilities are brought back onto the input grid
        (``restore_probabilities``) and added, one model at a time, to a running weighted sum:
        peak memory is about ``4*C*N`` bytes for the sum (``2*C*N`` in float16) plus one
        model's probabilities on the input grid (``4*C*N``, briefly twice while restoring) and
        on its preprocessed grid (``4*C*N'``), for ``N`` input voxels, ``N'`` preprocessed
        voxels and ``C`` classes, whatever the number of models; the variance adds one sum of
        squares, and TTA with uncertainty one sum of the passes (docs/predict.md).
        """
        ensemble.check_uncertainty(uncertainty, self.passes)
        if not self.is_ensemble and not probabilities and uncertainty is None:
            member = self.members[0]
            image = as_batch(prepared.images[member.plan_index])
            output = self._sliding_window(member, image, "labels", stitch_device)
            return Inference(indices=output[0].numpy(), on_input_grid=False)
        separate = uncertainty is not None and self.tta
        accumulator = ensemble.ProbabilityAccumulator(
            dtype=self.accumulate_dtype,
            separate_passes=separate,
            squares=uncertainty == "variance",
        )
        for member in self.members:
            image = as_batch(prepared.images[member.plan_index])
            restore = prepared.restores[member.plan_index]
            if separate:
                maps = self._mirror_passes(member, image, stitch_device)
            else:
                maps = [self._sliding_window(member, image, "probabilities", stitch_device)[0]]
            del image
            restored = []
            while maps:  # one map at a time: each preprocessed map is freed once restored
                restored.append(self._to_input_grid(maps.pop(0), restore))
            accumulator.add(
                restored[0],
                member.weight,
                pass_mean=restored[1] if separate else None,
                pass_square_mean=restored[2] if len(restored) > 2 else None,
                consume=True,
            )
            del restored
        mean = accumulator.mean()
        indices = ensemble.argmax(mean)
        return Inference(
            indices=indices,
            on_input_grid=True,
            probabilities=mean if probabilities else None,
            uncertainty=None
            if uncertainty is None
            else accumulator.uncertainty(uncertainty, self.activation),
            uncertainty_kind=uncertainty,
        )

    def restore(self, prepared: PreparedScan, inference: Inference) -> np.ndarray:
        """Label values ``(*input)`` on the input grid (channel index -> label value)."""
        from medseg3d.data.preprocess import restore_labels

        indices = inference.indices
        if not inference.on_input_grid:
            indices = np.asarray(restore_labels(indices, prepared.restores[0]).array)
        return self.values_of(indices.astype(np.int64 if max(self._values) > 255 else np.uint8))

    def postprocess(self, labels: np.ndarray) -> np.ndarray:
        """The optional largest-component / fill-holes steps on a label map."""
        return postprocess(
            labels, largest_component=self.largest_component, fill_holes=self.fill_holes
        )

    def values_of(self, indices: np.ndarray) -> np.ndarray:
        """Map output channel indices to label values (identity for labels 0..C-1)."""
        if list(self._values) == list(range(len(self._values))):
            return indices
        lookup = np.asarray(self._values, dtype=np.int64)
        return lookup[indices.astype(np.int64)]

    # --- reports ------------------------------------------------------------------------------
    @property
    def passes(self) -> int:
        """Predictions the uncertainty is measured over: models x mirror combinations."""
        return sum(len(mirror_flips(m)) if self.tta else 1 for m in self.members)

    def settings(self) -> dict[str, Any]:
        """The inference settings in effect (for reports)."""
        settings = {
            "patch_size": list(self.patch_size),
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "tta": self.tta,
            "largest_component": bool(self.largest_component),
            "fill_holes": bool(self.fill_holes),
        }
        if self.is_ensemble:
            settings["models"] = [
                {
                    "path": str(m.path),
                    "weight": round(m.weight, 6),
                    "patch_size": list(m.patch_size),
                    "overlap": m.overlap,
                }
                for m in self.members
            ]
            settings["accumulate_dtype"] = np.dtype(self.accumulate_dtype).name
        return settings

    def describe_model(self, member: int = 0) -> str:
        return self.members[member].describe()

    # --- one model, with this predictor's device and settings -------------------------------
    def _sliding_window(self, member: Member, tensor, output: str, stitch_device=None):
        return sliding_window(
            member,
            tensor,
            output,
            device=self.device,
            batch_size=self.batch_size,
            progress=self.progress,
            tta=self.tta,
            stitch_device=stitch_device,
        )

    def _mirror_passes(self, member: Member, tensor, stitch_device=None):
        return mirror_passes(
            member,
            tensor,
            device=self.device,
            batch_size=self.batch_size,
            progress=self.progress,
            stitch_device=stitch_device,
        )

    def _to_input_grid(self, probabilities: torch.Tensor, restore) -> np.ndarray:
        from medseg3d.data.preprocess import restore_probabilities

        back = restore_probabilities(probabilities.numpy(), restore).array
        return ensemble.to_layout(back, self.channels)


def _folders(model_dir: ModelDirs) -> list[str | os.PathLike]:
    folders = [model_dir] if isinstance(model_dir, (str, os.PathLike)) else list(model_dir)
    if not folders:
        raise ConfigError("no model folder given; pass one folder or a list of them (-m)")
    return folders


def _lap(clock: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - clock, now
