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
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.inference import ensemble
from medseg3d.inference.device import describe_device, select_device
from medseg3d.inference.model_folder import LoadedModel, load_model_folder, read_model_yaml
from medseg3d.inference.postprocess import label_volumes, postprocess
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

Source = str | os.PathLike | Volume
Inputs = Source | Sequence[Source]
ModelDirs = str | os.PathLike | Sequence[str | os.PathLike]


@dataclass
class Prediction:
    """One segmented scan: the label map (and probabilities) on the input's grid, and a report.

    ``labels``: integer label map (*spatial) with the input's affine; ``probabilities``: float32
    ``(*spatial, C)`` on the same grid (the ensemble mean), or None; ``uncertainty``: float32
    ``(*spatial)`` on the same grid, or None; ``image``: the (first channel of the) input;
    ``volumes``: ``{name: {"value", "voxels", "volume_ml"}}``; ``seconds``: time per step.
    """

    labels: Volume
    probabilities: Volume | None
    image: Volume
    names: dict[str, int]
    volumes: dict[str, dict[str, float]]
    seconds: dict[str, float] = field(default_factory=dict)
    device: str = ""
    uncertainty: Volume | None = None

    def save(
        self,
        path: str | os.PathLike,
        *,
        format: str = "auto",
        probabilities_path: str | os.PathLike | None = None,
        preview_path: str | os.PathLike | None = None,
        title: str | None = None,
        uncertainty_path: str | os.PathLike | None = None,
    ) -> list[Path]:
        """Write the label map (NIfTI/MHA/NRRD by extension, or ``format="dicom-seg"``), and
        optionally the probabilities, the uncertainty map (float32) and a preview PNG; every
        file atomically. Returns the paths."""
        from medseg3d.io import save_volume

        start = time.perf_counter()
        path = Path(path)
        if format == "dicom-seg":
            from medseg3d.io import write_dicom_seg

            names = {value: name for name, value in self.names.items() if value != 0}
            written = [write_dicom_seg(self.labels, self.image, path, labels=names)]
        else:
            written = [save_volume(self.labels, path, is_label=True)]
        for extra, volume, option in (
            (probabilities_path, self.probabilities, "probabilities=True"),
            (uncertainty_path, self.uncertainty, 'uncertainty="entropy" or "variance"'),
        ):
            if extra is None:
                continue
            if volume is None:
                raise ConfigError(f"{extra}: nothing to write; predict with {option}")
            written.append(save_volume(volume, extra, dtype=np.float32, is_label=False))
        if preview_path is not None:
            from medseg3d.inference.preview import save_preview

            written.append(
                save_preview(self.image, self.labels, preview_path, names=self.names, title=title)
            )
        self.seconds["write"] = time.perf_counter() - start
        return [Path(p) for p in written]


@dataclass
class PreparedScan:
    """A scan preprocessed for every distinct plan of the predictor's models.

    ``images[k]``: ``(C_in, *spatial)`` float32 on plan ``k``'s grid; ``restores[k]``: the grids
    to go back to the input (:class:`~medseg3d.data.preprocess.RestoreInfo`). Plain data: it can
    be sent to and from worker processes.
    """

    images: list[np.ndarray]
    restores: list[Any]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.restores[0].original_shape)

    @property
    def input_affine(self) -> np.ndarray:
        return np.asarray(self.restores[0].original_affine)


@dataclass
class Inference:
    """What :meth:`Predictor.infer` returns.

    ``indices``: the output-channel index of each voxel: ``(*input)`` on the input grid when
    ``on_input_grid``, else (one model, label-only mode) on the first plan's preprocessed grid;
    ``probabilities``: ``(*input, C)`` float32 mean over the models (when asked for);
    ``uncertainty``: ``(*input)`` float32 (when asked for).
    """

    indices: np.ndarray
    on_input_grid: bool
    probabilities: np.ndarray | None = None
    uncertainty: np.ndarray | None = None
    uncertainty_kind: str | None = None


@dataclass
class Member:
    """One model of the predictor: the loaded folder and its own inference settings."""

    loaded: LoadedModel
    plan_index: int
    weight: float
    patch_size: tuple[int, ...]
    overlap: float
    activation: str
    values: tuple[int, ...]

    @property
    def path(self) -> Path:
        return self.loaded.path


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
        from medseg3d.data.plan import Plan

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
        self.plans: list[Plan] = []
        self.members: list[Member] = []
        for folder, weight in zip(folders, member_weights):
            loaded = load_model_folder(folder, self.device)
            plan = Plan.from_dict(loaded.plan)
            plan_dicts = [p.to_dict() for p in self.plans]
            if plan.to_dict() not in plan_dicts:
                self.plans.append(plan)
                plan_dicts.append(plan.to_dict())
            member_overlap = float(
                loaded.inference.get("overlap", 0.5) if overlap is None else overlap
            )
            if not 0.0 <= member_overlap < 1.0:
                raise ConfigError(f"--overlap must be in [0, 1), got {member_overlap}")
            activation = str(
                loaded.inference.get("activation")
                or ("sigmoid" if loaded.out_channels == 1 else "softmax")
            )
            self.members.append(
                Member(
                    loaded=loaded,
                    plan_index=plan_dicts.index(plan.to_dict()),
                    weight=weight,
                    patch_size=_patch_size(loaded, patch_size),
                    overlap=member_overlap,
                    activation=activation,
                    values=_channel_values(loaded.labels, loaded.out_channels),
                )
            )
            logger.info("loaded %s on %s", loaded.path, self.device_description)
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
    ) -> Volume:
        """The label map of ``image`` (a path, a Volume, or one per input channel) on its exact
        grid. With ``probabilities=True`` the class probabilities ``(*spatial, C)`` float32 are
        attached as ``result.meta["probabilities"]`` (a Volume on the same grid); with
        ``uncertainty`` (``"entropy"`` or ``"variance"``) the map as ``meta["uncertainty"]``."""
        result = self.predict_case(
            image, series=series, probabilities=probabilities, uncertainty=uncertainty
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
    ) -> Prediction:
        """Everything about one prediction: labels, probabilities, uncertainty, the input,
        volumes, timing: :meth:`read` -> :meth:`prepare` -> :meth:`infer` -> :meth:`restore` ->
        :meth:`postprocess`."""
        ensemble.check_uncertainty(uncertainty, self.passes)
        seconds: dict[str, float] = {}
        start = clock = time.perf_counter()
        channels = self.read(image, series)
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

        reference = channels[0]
        meta = {k: v for k, v in reference.meta.items() if k not in ("modality", "is_label")}
        label_volume = Volume(
            array.astype(_label_dtype(self._values)),
            reference.affine.copy(),
            meta | {"is_label": True, "labels": dict(self.labels)},
        )
        probability_volume = uncertainty_volume = None
        if inference.probabilities is not None:
            probability_volume = Volume(
                inference.probabilities, reference.affine.copy(), {}, has_channels=True
            )
            probability_volume.meta["class_values"] = list(self._values)
        if inference.uncertainty is not None:
            uncertainty_volume = Volume(
                inference.uncertainty,
                reference.affine.copy(),
                {"uncertainty": inference.uncertainty_kind},
            )
        seconds["total"] = time.perf_counter() - start
        return Prediction(
            labels=label_volume,
            probabilities=probability_volume,
            image=reference,
            names=dict(self.labels),
            volumes=label_volumes(array, reference.spacing, self.labels),
            seconds=seconds,
            device=self.device_description,
            uncertainty=uncertainty_volume,
        )

    # --- stages -------------------------------------------------------------------------------
    def read(self, image: Inputs, series: str | None = None) -> list[Volume]:
        """The input as one single-channel Volume per model input channel (files are read with
        :func:`medseg3d.io.load_volume`; 4D inputs are split). Raises for NaN/Inf voxels, the
        wrong number of channels or dimensions."""
        from medseg3d.io import check_finite, load_volume

        sources = list(image) if isinstance(image, (list, tuple)) else [image]
        volumes = []
        for source in sources:
            if isinstance(source, Volume):
                check_finite(source)
                volume = source
            else:
                volume = load_volume(source, series=series)
            if volume.has_channels:
                volumes += [
                    volume.with_array(volume.array[..., c]) for c in range(volume.num_channels)
                ]
            else:
                volumes.append(volume)
        if len(volumes) != self.loaded.in_channels:
            names = ", ".join(self.plan.channel_names)
            raise ShapeError(
                f"the model takes {self.loaded.in_channels} input channel(s) ({names}) but "
                f"{len(volumes)} were given; pass one image per channel (-i repeated) or a 4D file"
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
            image = _tensor(prepared.images[member.plan_index])
            output = self._sliding_window(member, image, "labels", stitch_device)
            return Inference(indices=output[0].numpy(), on_input_grid=False)
        separate = uncertainty is not None and self.tta
        accumulator = ensemble.ProbabilityAccumulator(
            dtype=self.accumulate_dtype,
            separate_passes=separate,
            squares=uncertainty == "variance",
        )
        for member in self.members:
            image = _tensor(prepared.images[member.plan_index])
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
        indices = _argmax(mean)
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

    _values_of = values_of  # the former private name

    # --- reports ------------------------------------------------------------------------------
    @property
    def passes(self) -> int:
        """Predictions the uncertainty is measured over: models x mirror combinations."""
        return sum(len(self._flips(m)) if self.tta else 1 for m in self.members)

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
        spec = self.members[member].loaded.model_spec
        names = ", ".join(name for name, value in self.labels.items() if value != 0)
        return f"{spec['name']} {spec['spatial_dims']}D, labels: {names}"

    # --- inference of one model ---------------------------------------------------------------
    def _sliding_window(
        self, member: Member, tensor: torch.Tensor, output: str, stitch_device=None, network=None
    ) -> torch.Tensor:
        """``(1, C_in, *spatial)`` -> labels ``(1, 1, *spatial)`` or probabilities/logits
        ``(1, C, *spatial)`` on the CPU. Label maps are stitched on the compute device (a byte
        per voxel), the rest on the CPU; a CUDA out-of-memory error while stitching falls back
        to the CPU."""
        from medseg3d.inference.sliding_window import sliding_window_inference

        options = dict(
            overlap=member.overlap,
            mode="gaussian",
            batch_size=self.batch_size,
            output=output,
            activation=member.activation,
            mirror_axes=self._mirror_axes(member) if self.tta and network is None else None,
            out_channels=member.loaded.out_channels,
            progress=self.progress,
            compute_device=self.device,
        )
        if stitch_device is not None:
            stitch = torch.device(stitch_device)
        else:
            stitch = self.device if output == "labels" else torch.device("cpu")
        network = network or member.loaded.model
        with torch.inference_mode():
            try:
                result = sliding_window_inference(
                    tensor, network, member.patch_size, device=stitch, **options
                )
            except torch.cuda.OutOfMemoryError:
                if stitch.type != "cuda":
                    raise
                logger.warning("out of GPU memory while stitching; stitching on the CPU instead")
                torch.cuda.empty_cache()
                result = sliding_window_inference(
                    tensor, network, member.patch_size, device="cpu", **options
                )
        return result.cpu()

    def _mirror_passes(self, member: Member, tensor: torch.Tensor, stitch_device=None):
        """Each mirror combination as its own pass (the same network evaluations as TTA):
        ``[tta probabilities, mean of the passes' probabilities, mean of their squares]``, each
        ``(C, *spatial)`` on the preprocessed grid. The first is exactly what TTA gives (the
        activation of the mean logits); the other two measure the spread of the passes."""
        flips = self._flips(member)
        logit_sum = pass_sum = square_sum = None
        with torch.inference_mode():
            for dims in flips:
                logits = self._sliding_window(
                    member, tensor, "logits", stitch_device, _Mirrored(member.loaded.model, dims)
                )[0]
                p = _activate(logits, member.activation)
                if logit_sum is None:
                    logit_sum, pass_sum, square_sum = logits, p.clone(), p.square()
                else:
                    logit_sum += logits
                    pass_sum += p
                    square_sum += p.square()
                del logits, p
            count = float(len(flips))
            return [
                _activate(logit_sum / count, member.activation),
                pass_sum / count,
                square_sum / count,
            ]

    def _to_input_grid(self, probabilities: torch.Tensor, restore) -> np.ndarray:
        from medseg3d.data.preprocess import restore_probabilities

        back = restore_probabilities(probabilities.numpy(), restore).array
        return ensemble.to_layout(back, self.channels)

    def _mirror_axes(self, member: Member) -> tuple[int, ...]:
        axes = member.loaded.inference.get("mirror_axes")
        return tuple(range(self.spatial_dims)) if axes is None else tuple(int(a) for a in axes)

    def _flips(self, member: Member) -> list[tuple[int, ...]]:
        """Every mirror combination (the identity first) as tensor dims of ``(B, C, *spatial)``."""
        import itertools

        axes = sorted(set(self._mirror_axes(member)))
        return [
            tuple(axis + 2 for axis in combination)
            for count in range(len(axes) + 1)
            for combination in itertools.combinations(axes, count)
        ]


def prepare_scan(channels: Sequence[Volume], plans: Sequence[Any]) -> PreparedScan:
    """Preprocess ``channels`` for each of ``plans`` (:class:`~medseg3d.data.plan.Plan` or its
    dict) -> :class:`PreparedScan`. Needs no model: batch readers call it in worker processes."""
    from medseg3d.data.plan import Plan
    from medseg3d.data.preprocess import preprocess

    images, restores = [], []
    for plan in plans:
        case = preprocess(list(channels), plan if isinstance(plan, Plan) else Plan.from_dict(plan))
        images.append(case.image)
        restores.append(case.restore)
    return PreparedScan(images=images, restores=restores)


class _Mirrored(torch.nn.Module):
    """The network seen through a mirror: ``flip(net(flip(x)))`` over ``dims`` (the full-
    resolution output of deep supervision)."""

    def __init__(self, network: torch.nn.Module, dims: tuple[int, ...]):
        super().__init__()
        self.network, self.dims = network, dims

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if not self.dims:
            output = self.network(batch)
            return output[0] if isinstance(output, (list, tuple)) else output
        output = self.network(torch.flip(batch, self.dims))
        output = output[0] if isinstance(output, (list, tuple)) else output
        return torch.flip(output, self.dims)


def _activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Softmax over the channel axis 0 of ``(C, *spatial)``, or sigmoid per channel."""
    return torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=0)


def _argmax(probabilities: np.ndarray) -> np.ndarray:
    """Channel index per voxel of ``(*spatial, C)`` as uint8 (int16 above 256 channels), slab by
    slab (no int64 map of the whole volume); ``p > 0.5`` for one sigmoid channel."""
    channels = probabilities.shape[-1]
    out = np.empty(probabilities.shape[:-1], np.uint8 if channels <= 256 else np.int16)
    for start in range(0, len(out), 8):
        part = probabilities[start : start + 8]
        out[start : start + 8] = part[..., 0] > 0.5 if channels == 1 else np.argmax(part, -1)
    return out


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]


def _folders(model_dir: ModelDirs) -> list[str | os.PathLike]:
    folders = [model_dir] if isinstance(model_dir, (str, os.PathLike)) else list(model_dir)
    if not folders:
        raise ConfigError("no model folder given; pass one folder or a list of them (-m)")
    return folders


def _patch_size(loaded: LoadedModel, patch_size: int | Sequence[int] | None) -> tuple[int, ...]:
    spatial_dims = loaded.spatial_dims
    if patch_size is None:
        patch_size = loaded.inference["patch_size"]
    if isinstance(patch_size, int):
        patch_size = [patch_size] * spatial_dims
    patch = tuple(int(p) for p in patch_size)
    if len(patch) == 1:
        patch = patch * spatial_dims
    if len(patch) != spatial_dims or any(p < 1 for p in patch):
        raise ConfigError(f"--patch-size needs {spatial_dims} positive sizes, got {list(patch)}")
    divisor = int(getattr(loaded.model, "size_divisor", 1) or 1)
    bad = [p for p in patch if p % divisor]
    if bad:
        fixed = [max(divisor, round(p / divisor) * divisor) for p in patch]
        raise ConfigError(
            f"--patch-size {list(patch)}: sizes must be multiples of {divisor} for the network "
            f"of {loaded.path}; try {','.join(map(str, fixed))}"
        )
    return patch


def _channel_values(labels: dict[str, int], out_channels: int) -> tuple[int, ...]:
    """The label value of each output index: ascending label values (0 first). A one-channel
    (sigmoid) model has indices 0 (background) and 1 (its one foreground label)."""
    values = sorted(set(int(v) for v in labels.values()))
    if out_channels == 1 and len(values) == 2:
        return tuple(values)
    if len(values) != out_channels and max(values) + 1 != out_channels:
        raise ConfigError(
            f"the model has {out_channels} output channels but its labels are {labels}; "
            "the model folder is inconsistent"
        )
    return tuple(values) if len(values) == out_channels else tuple(range(out_channels))


def _label_dtype(values: Sequence[int]) -> type:
    return np.uint8 if max(values) < 256 else np.uint16


def _lap(clock: float) -> tuple[float, float]:
    now = time.perf_counter()
    return now - clock, now
