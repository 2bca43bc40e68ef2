"""``Predictor``: a model folder loaded once, applied to many scans.

>>> predictor = Predictor("models/liver", device="auto")
>>> mask = predictor.predict("scans/case_001.nii.gz")      # Volume on the input's exact grid
>>> save_volume(mask, "case_001_seg.nii.gz")

Per scan: read (NIfTI, MHA/NRRD, DICOM folder) -> exactly the model's preprocessing (orientation,
spacing, normalisation from the plan in the model folder) -> sliding-window inference (label-only
mode by default: memory bounded by one patch batch plus the label map) -> back onto the input's
grid -> optional post-processing.
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
from medseg3d.inference.device import describe_device, select_device
from medseg3d.inference.model_folder import LoadedModel, load_model_folder
from medseg3d.inference.postprocess import label_volumes, postprocess
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

Source = str | os.PathLike | Volume
Inputs = Source | Sequence[Source]


@dataclass
class Prediction:
    """One segmented scan: the label map (and probabilities) on the input's grid, and a report.

    ``labels``: integer label map (*spatial) with the input's affine; ``probabilities``: float32
    ``(*spatial, C)`` on the same grid, or None; ``image``: the (first channel of the) input;
    ``volumes``: ``{name: {"value", "voxels", "volume_ml"}}``; ``seconds``: time per step.
    """

    labels: Volume
    probabilities: Volume | None
    image: Volume
    names: dict[str, int]
    volumes: dict[str, dict[str, float]]
    seconds: dict[str, float] = field(default_factory=dict)
    device: str = ""

    def save(
        self,
        path: str | os.PathLike,
        *,
        format: str = "auto",
        probabilities_path: str | os.PathLike | None = None,
        preview_path: str | os.PathLike | None = None,
        title: str | None = None,
    ) -> list[Path]:
        """Write the label map (NIfTI/MHA/NRRD by extension, or ``format="dicom-seg"``), and
        optionally the probabilities and a preview PNG; every file atomically. Returns the paths."""
        from medseg3d.io import save_volume

        start = time.perf_counter()
        path = Path(path)
        if format == "dicom-seg":
            from medseg3d.io import write_dicom_seg

            names = {value: name for name, value in self.names.items() if value != 0}
            written = [write_dicom_seg(self.labels, self.image, path, labels=names)]
        else:
            written = [save_volume(self.labels, path, is_label=True)]
        if probabilities_path is not None:
            if self.probabilities is None:
                raise ConfigError("no probabilities were computed; predict with probabilities=True")
            written.append(
                save_volume(
                    self.probabilities, probabilities_path, dtype=np.float32, is_label=False
                )
            )
        if preview_path is not None:
            from medseg3d.inference.preview import save_preview

            written.append(
                save_preview(self.image, self.labels, preview_path, names=self.names, title=title)
            )
        self.seconds["write"] = time.perf_counter() - start
        return [Path(p) for p in written]


class Predictor:
    """Segment scans with the model in ``model_dir``; the model is loaded once.

    Args:
        model_dir: a model folder (see :mod:`medseg3d.inference.model_folder`).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:<i>"``.
        overlap: sliding-window overlap in [0, 1); default: the model folder's.
        batch_size: patches per forward pass.
        tta: test-time augmentation, averaging over mirrored inputs (2**spatial_dims passes,
            over the axes the model was trained to mirror when ``inference.mirror_axes`` says).
        patch_size: inference patch in voxels (default: the training patch); a larger patch
            means fewer windows. Must be a multiple of the network's size divisor.
        progress: show a progress bar over the windows.
        largest_component: keep only the largest connected component of each class (``True``)
            or of the given label values.
        fill_holes: fill enclosed holes of each class (``True``) or of the given label values.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        overlap: float | None = None,
        batch_size: int = 4,
        tta: bool = False,
        patch_size: int | Sequence[int] | None = None,
        progress: bool = False,
        largest_component: bool | Sequence[int] = False,
        fill_holes: bool | Sequence[int] = False,
    ):
        import medseg3d.data.preprocess
        import medseg3d.transforms  # noqa: F401  (imported by preprocessing; load it once, here)
        from medseg3d.data.plan import Plan

        self.device = select_device(device)
        self.device_description = describe_device(self.device)
        self.loaded: LoadedModel = load_model_folder(model_dir, self.device)
        self.model_dir = self.loaded.path
        self.plan = Plan.from_dict(self.loaded.plan)
        self.labels = dict(self.loaded.labels)
        self.spatial_dims = self.loaded.spatial_dims
        self.overlap = float(
            self.loaded.inference.get("overlap", 0.5) if overlap is None else overlap
        )
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"--overlap must be in [0, 1), got {self.overlap}")
        if int(batch_size) < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.tta = bool(tta)
        self.patch_size = self._patch_size(patch_size)
        self.progress = progress
        self.largest_component = largest_component
        self.fill_holes = fill_holes
        self.activation = str(
            self.loaded.inference.get("activation")
            or ("sigmoid" if self.loaded.out_channels == 1 else "softmax")
        )
        self._values = _channel_values(self.labels, self.loaded.out_channels)
        logger.info("loaded %s on %s", self.model_dir, self.device_description)

    # --- public -------------------------------------------------------------------------------
    def predict(
        self, image: Inputs, *, series: str | None = None, probabilities: bool = False
    ) -> Volume:
        """The label map of ``image`` (a path, a Volume, or one per input channel) on its exact
        grid. With ``probabilities=True`` the class probabilities ``(*spatial, C)`` float32 are
        attached as ``result.meta["probabilities"]`` (a Volume on the same grid)."""
        result = self.predict_case(image, series=series, probabilities=probabilities)
        if result.probabilities is not None:
            result.labels.meta["probabilities"] = result.probabilities
        return result.labels

    def predict_case(
        self, image: Inputs, *, series: str | None = None, probabilities: bool = False
    ) -> Prediction:
        """Everything about one prediction: labels, probabilities, the input, volumes, timing."""
        from medseg3d.data.preprocess import preprocess, restore_labels, restore_probabilities

        seconds: dict[str, float] = {}
        start = clock = time.perf_counter()
        channels = self._read(image, series)
        seconds["read"], clock = _lap(clock)

        case = preprocess(channels, self.plan)
        seconds["preprocess"], clock = _lap(clock)

        tensor = torch.from_numpy(np.ascontiguousarray(case.image, dtype=np.float32))[None]
        restore = case.restore
        del case  # the preprocessed image is not needed any more: free it before restoring
        output = self._infer(tensor, "probabilities" if probabilities else "labels")
        del tensor
        seconds["inference"], clock = _lap(clock)

        probability_volume = None
        if probabilities:
            probability_volume = restore_probabilities(output[0].numpy(), restore)
            probability_volume.meta["class_values"] = list(self._values)
            scores = probability_volume.channel_first()
            indices = (scores[0] > 0.5) if len(scores) == 1 else np.argmax(scores, axis=0)
        else:
            indices = np.asarray(restore_labels(output[0].numpy(), restore).array)
        array = self._values_of(indices.astype(np.int64 if max(self._values) > 255 else np.uint8))
        seconds["restore"], clock = _lap(clock)

        array = postprocess(
            array, largest_component=self.largest_component, fill_holes=self.fill_holes
        )
        seconds["postprocess"], clock = _lap(clock)
        reference = channels[0]
        label_volume = reference.with_array(array.astype(_label_dtype(self._values)), is_label=True)
        label_volume.has_channels = False
        label_volume.meta = {
            key: value
            for key, value in reference.meta.items()
            if key not in ("modality", "is_label")
        } | {"is_label": True, "labels": dict(self.labels)}
        seconds["total"] = time.perf_counter() - start
        volumes = label_volumes(array, reference.spacing, self.labels)
        return Prediction(
            labels=label_volume,
            probabilities=probability_volume,
            image=reference,
            names=dict(self.labels),
            volumes=volumes,
            seconds=seconds,
            device=self.device_description,
        )

    def settings(self) -> dict[str, Any]:
        """The inference settings in effect (for reports)."""
        return {
            "patch_size": list(self.patch_size),
            "overlap": self.overlap,
            "batch_size": self.batch_size,
            "tta": self.tta,
            "largest_component": bool(self.largest_component),
            "fill_holes": bool(self.fill_holes),
        }

    def describe_model(self) -> str:
        spec = self.loaded.model_spec
        names = ", ".join(name for name, value in self.labels.items() if value != 0)
        return f"{spec['name']} {spec['spatial_dims']}D, labels: {names}"

    # --- steps --------------------------------------------------------------------------------
    def read(self, image: Inputs, series: str | None = None) -> list[Volume]:
        """The input as one single-channel Volume per model input channel (files are read with
        :func:`medseg3d.io.load_volume`; 4D inputs are split). Raises for NaN/Inf voxels, the
        wrong number of channels or dimensions."""
        return self._read(image, series)

    def _read(self, image: Inputs, series: str | None) -> list[Volume]:
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

    def _infer(self, tensor: torch.Tensor, output: str) -> torch.Tensor:
        """``(1, C_in, *spatial)`` on the CPU -> labels ``(1, 1, *spatial)`` or probabilities
        ``(1, C, *spatial)`` on the CPU. Label maps are stitched on the compute device (a byte per
        voxel); probabilities on the CPU. A CUDA out-of-memory error while stitching falls back
        to the CPU."""
        from medseg3d.inference.sliding_window import sliding_window_inference

        options = dict(
            overlap=self.overlap,
            mode="gaussian",
            batch_size=self.batch_size,
            output=output,
            activation=self.activation,
            mirror_axes=self._mirror_axes() if self.tta else None,
            out_channels=self.loaded.out_channels,
            progress=self.progress,
        )
        stitch = self.device if output == "labels" else torch.device("cpu")
        with torch.inference_mode():
            try:
                result = sliding_window_inference(
                    tensor, self.loaded.model, self.patch_size, device=stitch, **options
                )
            except torch.cuda.OutOfMemoryError:
                if stitch.type != "cuda":
                    raise
                logger.warning("out of GPU memory while stitching; stitching on the CPU instead")
                torch.cuda.empty_cache()
                result = sliding_window_inference(
                    tensor, self.loaded.model, self.patch_size, device="cpu", **options
                )
        return result.cpu()

    def _mirror_axes(self) -> tuple[int, ...]:
        axes = self.loaded.inference.get("mirror_axes")
        return tuple(range(self.spatial_dims)) if axes is None else tuple(int(a) for a in axes)

    def _patch_size(self, patch_size: int | Sequence[int] | None) -> tuple[int, ...]:
        if patch_size is None:
            patch_size = self.loaded.inference["patch_size"]
        if isinstance(patch_size, int):
            patch_size = [patch_size] * self.spatial_dims
        patch = tuple(int(p) for p in patch_size)
        if len(patch) == 1:
            patch = patch * self.spatial_dims
        if len(patch) != self.spatial_dims or any(p < 1 for p in patch):
            raise ConfigError(
                f"--patch-size needs {self.spatial_dims} positive sizes, got {list(patch)}"
            )
        divisor = int(getattr(self.loaded.model, "size_divisor", 1) or 1)
        bad = [p for p in patch if p % divisor]
        if bad:
            fixed = [max(divisor, round(p / divisor) * divisor) for p in patch]
            raise ConfigError(
                f"--patch-size {list(patch)}: sizes must be multiples of {divisor} for this "
                f"network; try {','.join(map(str, fixed))}"
            )
        return patch

    def _values_of(self, indices: np.ndarray) -> np.ndarray:
        """Map output channel indices to label values (identity for labels 0..C-1)."""
        if list(self._values) == list(range(len(self._values))):
            return indices
        lookup = np.asarray(self._values, dtype=np.int64)
        return lookup[indices.astype(np.int64)]


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
