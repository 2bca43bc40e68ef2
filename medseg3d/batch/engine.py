"""One model (or an ensemble), three stages per case, so that I/O can overlap inference.

:class:`CaseEngine` wraps a :class:`~medseg3d.inference.predictor.Predictor` (the models are
loaded once) and runs its public stages where a pipeline needs them:

1. :meth:`Preparer.prepare` (worker thread or process): read the scan, check its channels and
   modality, preprocess it exactly as each model's plan says (``prepare_scan``: once per
   distinct plan) -> :class:`PreparedCase`. No model is involved, and the :class:`Preparer` is
   plain data, so it can be sent to worker processes.
2. :meth:`CaseEngine.infer` (the thread that owns the models): ``Predictor.infer``: one model in
   label-only mode -> label indices on the preprocessed grid; an ensemble -> the argmax of the
   averaged probabilities on the input grid (and the uncertainty map when asked for). On an
   out-of-memory error on the accelerator it retries once with the stitching on the CPU (as
   nnU-Net does).
3. :meth:`CaseEngine.finish` (background thread): ``Predictor.restore`` onto the input's exact
   grid, ``Predictor.postprocess``, atomic writes (the uncertainty map first, the mask last: the
   mask marks a case done), per-label volumes.

The stages are those ``Predictor.predict_case`` composes, so ``medseg3d batch`` and
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

    ``scan``: the :class:`~medseg3d.inference.prediction.PreparedScan` (``(C, *spatial)``
    float32 per distinct plan, and the grids to go back); ``affine``/``shape``/``meta``: the
    input's grid (RAS+ mm, voxels) and metadata kept for the output; ``seconds``: time per stage
    so far.
    """

    case: BatchCase
    scan: Any
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

    ``plans``: the distinct plans of the model folders (``Plan.to_dict()``, the first model's
    first); ``in_channels``/``spatial_dims``: the networks'; ``labels``: ``{name: value}`` (to
    measure existing outputs when skipping); ``uncertainty``: the uncertainty map written beside
    each mask (``"entropy"``, ``"variance"`` or None): an output without it is not done;
    ``dicom_seg``: a DICOM SEG is written beside the mask of each DICOM case (the list of source
    files is then kept in the metadata).
    """

    plans: tuple[dict[str, Any], ...]
    in_channels: int
    spatial_dims: int
    labels: dict[str, int]
    uncertainty: str | None = None
    dicom_seg: bool = False
    allow_irregular: bool = False

    def prepare(self, case: BatchCase) -> PreparedCase:
        """Read the scan (one file per channel, a multi-channel file, or a DICOM series), check
        channels, dimensions and modality, and preprocess it exactly as each plan says."""
        from medseg3d.inference.predictor import prepare_scan

        clock = time.perf_counter()
        names = self.plans[0].get("channel_names") or []
        channels = read_channels(
            case, self.in_channels, self.spatial_dims, names, allow_irregular=self.allow_irregular
        )
        read = time.perf_counter() - clock
        reference = channels[0]
        scan = prepare_scan(channels, [dict(plan) for plan in self.plans])
        meta = {k: v for k, v in reference.meta.items() if k not in ("modality", "is_label")}
        return PreparedCase(
            case=case,
            scan=scan,
            affine=reference.affine.copy(),
            shape=tuple(reference.spatial_shape),
            meta=meta if self.dicom_seg and case.dicom else _plain_meta(meta),
            seconds={"read": read, "preprocess": time.perf_counter() - clock - read},
        )


def read_channels(
    case: BatchCase,
    in_channels: int,
    spatial_dims: int,
    channel_names: Sequence[str],
    *,
    allow_irregular: bool = False,
) -> list[Volume]:
    """The case's input as one single-channel Volume per model channel (the same reading and
    channel check as ``Predictor``), then its dimensions and the modality of DICOM inputs."""
    from medseg3d.inference.inputs import read_channels as read_inputs

    volumes = read_inputs(
        case.inputs,
        in_channels,
        channel_names,
        series=case.series,
        allow_irregular=allow_irregular,
    )
    dims = volumes[0].spatial_dims
    if dims != spatial_dims and not (spatial_dims == 2 and dims == 3):
        raise ShapeError(f"case {case.case_id}: the model is {spatial_dims}D, the input is {dims}D")
    check_modality(volumes, channel_names, case)
    return volumes


class CaseEngine:
    """The model(s) loaded once and the three stages around them.

    ``model_dir``: one model folder or a list of them (an ensemble); ``options``: ``Predictor``
    options (``weights``, ``overlap``, ``batch_size``, ``tta``, ``patch_size``,
    ``largest_component``, ``fill_holes``, ``accumulate_dtype``) and ``uncertainty``
    (``"entropy"``/``"variance"``: write ``<case>_uncertainty.nii.gz`` beside each mask) and
    ``dicom_seg`` (write ``<case>_seg.dcm``, a DICOM SEG referencing the source series, beside the
    mask of each DICOM case) and ``allow_irregular`` (read DICOM stacks with missing slices,
    uneven gaps or gantry tilt by resampling them onto a regular grid).
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        device: str = "auto",
        uncertainty: str | None = None,
        dicom_seg: bool = False,
        allow_irregular: bool = False,
        **options: Any,
    ):
        from medseg3d.inference.ensemble import check_uncertainty
        from medseg3d.inference.predictor import Predictor

        self.predictor = Predictor(model_dir, device=device, progress=False, **options)
        check_uncertainty(uncertainty, self.predictor.passes)
        self.uncertainty = uncertainty
        self.dicom_seg = bool(dicom_seg)
        self.labels: dict[str, int] = dict(self.predictor.labels)
        self.device = self.predictor.device
        self.device_description = self.predictor.device_description
        loaded = self.predictor.loaded
        self.preparer = Preparer(
            plans=tuple(plan.to_dict() for plan in self.predictor.plans),
            in_channels=loaded.in_channels,
            spatial_dims=loaded.spatial_dims,
            labels=dict(self.labels),
            uncertainty=uncertainty,
            dicom_seg=self.dicom_seg,
            allow_irregular=bool(allow_irregular),
        )

    @property
    def label_names(self) -> list[str]:
        """Foreground label names, in label-value order (the report's volume columns)."""
        return [name for name, value in sorted(self.labels.items(), key=lambda i: i[1]) if value]

    def prepare(self, case: BatchCase) -> PreparedCase:
        """Stage 1 (any thread): see :meth:`Preparer.prepare`."""
        return self.preparer.prepare(case)

    # --- stage 2: inference (the model's thread) ---------------------------------------------
    def infer(self, prepared: PreparedCase):
        """``Predictor.infer`` of the prepared scan (an :class:`~medseg3d.inference.predictor.
        Inference`); the preprocessed images are freed afterwards."""
        clock = time.perf_counter()
        predictor = self.predictor
        try:
            inference = predictor.infer(prepared.scan, uncertainty=self.uncertainty)
        except Exception as error:
            if not is_out_of_memory(error) or self.device.type == "cpu":
                raise
            logger.warning(
                "case %s: out of memory on %s; retrying with stitching on the CPU",
                prepared.case.case_id,
                self.device,
            )
            free_memory(self.device)
            inference = predictor.infer(
                prepared.scan, uncertainty=self.uncertainty, stitch_device="cpu"
            )
        prepared.scan.images = []
        prepared.seconds["inference"] = time.perf_counter() - clock
        return inference

    # --- stage 3: restore + write (background thread) ----------------------------------------
    def finish(self, prepared: PreparedCase, inference, output: Path) -> FinishedCase:
        from medseg3d.inference.postprocess import label_volumes
        from medseg3d.io import save_volume, write_dicom_seg

        clock = time.perf_counter()
        array = self.predictor.postprocess(self.predictor.restore(prepared.scan, inference))
        dtype = np.uint8 if max(self.labels.values()) < 256 else np.uint16
        meta = {**prepared.meta, "is_label": True, "labels": dict(self.labels)}
        volume = Volume(array.astype(dtype), prepared.affine, meta)
        if self.dicom_seg and prepared.case.dicom:  # the extras first: the mask marks it done
            names = {value: name for name, value in self.labels.items() if value}
            write_dicom_seg(array, volume, dicom_seg_path(output), labels=names)
        if inference.uncertainty is not None:
            uncertainty = Volume(
                inference.uncertainty, prepared.affine, {"uncertainty": self.uncertainty}
            )
            save_volume(uncertainty, uncertainty_path(output), dtype=np.float32, is_label=False)
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
        settings = {**self.predictor.settings(), "device": self.device_description}
        if self.uncertainty:
            settings["uncertainty"] = self.uncertainty
        if self.dicom_seg:
            settings["dicom_seg"] = True
        return settings


def uncertainty_path(output: str | os.PathLike) -> Path:
    """``OUT/<case>.nii.gz`` -> ``OUT/<case>_uncertainty.nii.gz`` (beside the mask)."""
    return _beside(output, "_uncertainty.nii.gz")


def dicom_seg_path(output: str | os.PathLike) -> Path:
    """``OUT/<case>.nii.gz`` -> ``OUT/<case>_seg.dcm`` (the DICOM SEG beside the mask)."""
    return _beside(output, "_seg.dcm")


def _beside(output: str | os.PathLike, ending: str) -> Path:
    output = Path(output)
    name = output.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(name + ending)


def check_modality(channels: Sequence[Volume], channel_names: Sequence[str], case: BatchCase):
    """Raise :class:`InputFileError` when a scan's modality (known for DICOM) contradicts the
    channel the model was trained on (e.g. an MR series given to a CT model)."""
    for index, (volume, name) in enumerate(zip(channels, channel_names)):
        found = str(volume.meta.get("modality") or "").upper()
        expected = MODALITY_OF_CHANNEL.get(str(name).upper())
        if found and expected and found != expected:
            hint = f"give the {expected} series (series_uid)" if case.dicom else "give that scan"
            raise InputFileError(
                f"wrong modality: channel {index} is {found}, the model expects {expected} "
                f"({name}); remove the case or {hint}",
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
