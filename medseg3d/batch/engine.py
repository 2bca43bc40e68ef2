"""One model, three stages per case, so that I/O can overlap inference.

:class:`CaseEngine` wraps a :class:`~medseg3d.inference.predictor.Predictor` (the model is loaded
once) and splits its ``predict`` into the stages a pipeline needs:

1. :meth:`Preparer.prepare` (worker thread or process): read the scan, check its channels and
   modality, preprocess it exactly as the model's plan says -> :class:`PreparedCase`. No model
   is involved, and the :class:`Preparer` is plain data, so it can be sent to worker processes.
2. :meth:`CaseEngine.infer` (the thread that owns the model): sliding-window inference in
   label-only mode -> label indices ``(*spatial)`` on the preprocessed grid. On an out-of-memory
   error on the accelerator it retries once with the stitching on the CPU (as nnU-Net does).
3. :meth:`CaseEngine.finish` (background thread): back onto the input's exact grid, optional
   post-processing, atomic write, per-label volumes.

The stages use the same functions as ``Predictor.predict_case`` (``preprocess``,
``sliding_window_inference``, ``restore_labels``, ``postprocess``), so ``medseg3d batch`` and
``medseg3d predict`` give identical masks.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg3d.batch.cases import BatchCase
from medseg3d.errors import InputFileError, ShapeError
from medseg3d.io.volume import Volume

logger = logging.getLogger(__name__)

#: Channel names (upper case) of a plan -> the DICOM Modality they imply.
MODALITY_OF_CHANNEL = {
    "CT": "CT",
    "MR": "MR",
    "MRI": "MR",
    "T1": "MR",
    "T1W": "MR",
    "T1C": "MR",
    "T1CE": "MR",
    "T1GD": "MR",
    "T2": "MR",
    "T2W": "MR",
    "FLAIR": "MR",
    "ADC": "MR",
    "DWI": "MR",
    "PD": "MR",
    "PET": "PT",
    "PT": "PT",
}


@dataclass
class PreparedCase:
    """A case read and preprocessed, waiting for the model.

    ``image``: ``(C, *spatial)`` float32 on the plan's grid; ``restore``: the grids to go back;
    ``affine``/``shape``/``meta``: the input's grid (RAS+ mm, voxels) and metadata kept for the
    output; ``seconds``: time per stage so far.
    """

    case: BatchCase
    image: np.ndarray
    restore: Any
    affine: np.ndarray
    shape: tuple[int, ...]
    meta: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class FinishedCase:
    """What a written case reports: output grid (voxels), spacing (mm), volumes (mL)."""

    output: Path
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    volumes_ml: dict[str, float]
    seconds: dict[str, float]


@dataclass(frozen=True)
class Preparer:
    """Stage 1 without the model: plain data (picklable), so it runs in threads or processes.

    ``plan``: the model folder's plan (``Plan.to_dict()``); ``in_channels``/``spatial_dims``: the
    network's; ``labels``: ``{name: value}`` (to measure existing outputs when skipping).
    """

    plan: dict[str, Any]
    in_channels: int
    spatial_dims: int
    labels: dict[str, int]

    def prepare(self, case: BatchCase) -> PreparedCase:
        """Read the scan (one file per channel, a multi-channel file, or a DICOM series), check
        channels, dimensions and modality, and preprocess it exactly as the plan says."""
        from medseg3d.data.plan import Plan
        from medseg3d.data.preprocess import preprocess

        clock = time.perf_counter()
        plan = Plan.from_dict(dict(self.plan))
        channels = read_channels(case, self.in_channels, self.spatial_dims, plan.channel_names)
        read = time.perf_counter() - clock
        reference = channels[0]
        processed = preprocess(channels, plan)
        meta = {k: v for k, v in reference.meta.items() if k not in ("modality", "is_label")}
        return PreparedCase(
            case=case,
            image=processed.image,
            restore=processed.restore,
            affine=reference.affine.copy(),
            shape=tuple(reference.spatial_shape),
            meta=_plain_meta(meta),
            seconds={"read": read, "preprocess": time.perf_counter() - clock - read},
        )


def read_channels(
    case: BatchCase, in_channels: int, spatial_dims: int, channel_names: Sequence[str]
) -> list[Volume]:
    """The case's input as one single-channel Volume per model channel (same checks as
    ``Predictor``: channel count, dimensions, and the modality of DICOM inputs)."""
    from medseg3d.io import load_volume

    volumes: list[Volume] = []
    for path in case.inputs:
        volume = load_volume(path, series=case.series)
        if volume.has_channels:
            volumes += [volume.with_array(volume.array[..., c]) for c in range(volume.num_channels)]
        else:
            volumes.append(volume)
    if len(volumes) != in_channels:
        raise ShapeError(
            f"case {case.case_id}: the model takes {in_channels} input channel(s) "
            f"({', '.join(channel_names)}) but the input has {len(volumes)}; give one file per "
            "channel or a multi-channel file"
        )
    dims = volumes[0].spatial_dims
    if dims != spatial_dims and not (spatial_dims == 2 and dims == 3):
        raise ShapeError(f"case {case.case_id}: the model is {spatial_dims}D, the input is {dims}D")
    check_modality(volumes, channel_names, case)
    return volumes


class CaseEngine:
    """The model loaded once (``Predictor`` options: ``overlap``, ``batch_size``, ``tta``,
    ``patch_size``, ``largest_component``, ``fill_holes``) and the three stages around it."""

    def __init__(self, model_dir: str | os.PathLike, *, device: str = "auto", **options: Any):
        from medseg3d.inference.predictor import Predictor

        self.predictor = Predictor(model_dir, device=device, progress=False, **options)
        self.labels: dict[str, int] = dict(self.predictor.labels)
        self.device = self.predictor.device
        self.device_description = self.predictor.device_description
        loaded = self.predictor.loaded
        self.preparer = Preparer(
            plan=dict(loaded.plan),
            in_channels=loaded.in_channels,
            spatial_dims=loaded.spatial_dims,
            labels=dict(self.labels),
        )

    @property
    def label_names(self) -> list[str]:
        """Foreground label names, in label-value order (the report's volume columns)."""
        return [name for name, value in sorted(self.labels.items(), key=lambda i: i[1]) if value]

    def prepare(self, case: BatchCase) -> PreparedCase:
        """Stage 1 (any thread): see :meth:`Preparer.prepare`."""
        return self.preparer.prepare(case)

    # --- stage 2: inference (the model's thread) ---------------------------------------------
    def infer(self, prepared: PreparedCase) -> np.ndarray:
        """Label indices ``(*spatial)`` on the preprocessed grid (int16)."""
        clock = time.perf_counter()
        tensor = torch.from_numpy(np.ascontiguousarray(prepared.image, dtype=np.float32))[None]
        try:
            output = self._sliding_window(tensor, stitch_device=self.device)
        except Exception as error:
            if not is_out_of_memory(error) or self.device.type == "cpu":
                raise
            logger.warning(
                "case %s: out of memory on %s; retrying with stitching on the CPU",
                prepared.case.case_id,
                self.device,
            )
            free_memory(self.device)
            output = self._sliding_window(tensor, stitch_device=torch.device("cpu"))
        indices = output[0, 0].cpu().numpy().astype(np.int16)
        prepared.seconds["inference"] = time.perf_counter() - clock
        return indices

    def _sliding_window(self, tensor: torch.Tensor, *, stitch_device: torch.device):
        from medseg3d.inference.sliding_window import sliding_window_inference

        predictor = self.predictor
        mirror_axes = None
        if predictor.tta:
            axes = predictor.loaded.inference.get("mirror_axes")
            mirror_axes = tuple(range(predictor.spatial_dims)) if axes is None else tuple(axes)
        with torch.inference_mode():
            return sliding_window_inference(
                tensor,
                predictor.loaded.model,
                predictor.patch_size,
                overlap=predictor.overlap,
                mode="gaussian",
                batch_size=predictor.batch_size,
                output="labels",
                mirror_axes=mirror_axes,
                compute_device=self.device,
                device=stitch_device,
            )

    # --- stage 3: restore + write (background thread) ----------------------------------------
    def finish(self, prepared: PreparedCase, indices: np.ndarray, output: Path) -> FinishedCase:
        from medseg3d.data.preprocess import restore_labels
        from medseg3d.inference.postprocess import label_volumes, postprocess
        from medseg3d.io import save_volume

        clock = time.perf_counter()
        restored = restore_labels(indices, prepared.restore)
        # Predictor._values_of: output channel index -> label value, as `medseg3d predict`.
        array = self.predictor._values_of(np.asarray(restored.array))
        array = postprocess(
            array,
            largest_component=self.predictor.largest_component,
            fill_holes=self.predictor.fill_holes,
        )
        dtype = np.uint8 if max(self.labels.values()) < 256 else np.uint16
        meta = {**prepared.meta, "is_label": True, "labels": dict(self.labels)}
        volume = Volume(array.astype(dtype), prepared.affine, meta)
        save_volume(volume, output, is_label=True)
        volumes = label_volumes(array, volume.spacing, self.labels)
        prepared.seconds["write"] = time.perf_counter() - clock
        return FinishedCase(
            output=Path(output),
            shape=volume.spatial_shape,
            spacing=volume.spacing,
            volumes_ml={name: entry["volume_ml"] for name, entry in volumes.items()},
            seconds=dict(prepared.seconds),
        )

    def settings(self) -> dict[str, Any]:
        return {**self.predictor.settings(), "device": self.device_description}


def check_modality(channels: Sequence[Volume], channel_names: Sequence[str], case: BatchCase):
    """Raise :class:`InputFileError` when a scan's modality (known for DICOM) contradicts the
    channel the model was trained on (e.g. an MR series given to a CT model)."""
    for index, (volume, name) in enumerate(zip(channels, channel_names)):
        found = str(volume.meta.get("modality") or "").upper()
        expected = MODALITY_OF_CHANNEL.get(str(name).upper())
        if found and expected and found != expected:
            raise InputFileError(
                f"wrong modality: channel {index} is {found}, the model expects {expected} "
                f"({name}); remove the case or give the {expected} series (series_uid)",
                path=case.inputs[min(index, len(case.inputs) - 1)],
            )


def _plain_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata worth keeping for the output (and cheap to send between processes): no lists of
    DICOM files or SOP instance UIDs."""
    return {k: v for k, v in meta.items() if k not in ("dicom_files", "sop_instance_uids")}


def is_out_of_memory(error: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and ``MemoryError`` (host RAM)."""
    if isinstance(error, MemoryError):
        return True
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(error, oom):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def free_memory(device: torch.device) -> None:
    """Release what a failed case held: Python garbage and the CUDA cache."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
