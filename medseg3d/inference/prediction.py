"""What a prediction produces and consumes: the scan prepared for each plan, one model pass's
result, and the segmented scan with its report (:class:`Prediction`, saved by :meth:`Prediction.save`)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg3d.errors import ConfigError
from medseg3d.io.volume import Volume


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


def assemble_prediction(
    reference: Volume,
    labels: np.ndarray,
    inference: Inference,
    *,
    names: dict[str, int],
    class_values: Sequence[int],
    device: str,
    seconds: dict[str, float],
) -> Prediction:
    """The :class:`Prediction` of label values ``labels`` (on ``reference``'s grid) and the
    probabilities / uncertainty of ``inference``, all as Volumes sharing ``reference``'s affine."""
    from medseg3d.inference.postprocess import label_volumes

    meta = {k: v for k, v in reference.meta.items() if k not in ("modality", "is_label")}
    labels = labels.astype(np.uint8 if max(class_values) < 256 else np.uint16)
    label_volume = Volume(
        labels, reference.affine.copy(), meta | {"is_label": True, "labels": dict(names)}
    )
    probability_volume = uncertainty_volume = None
    if inference.probabilities is not None:
        probability_volume = Volume(
            inference.probabilities, reference.affine.copy(), {}, has_channels=True
        )
        probability_volume.meta["class_values"] = list(class_values)
    if inference.uncertainty is not None:
        uncertainty_volume = Volume(
            inference.uncertainty,
            reference.affine.copy(),
            {"uncertainty": inference.uncertainty_kind},
        )
    return Prediction(
        labels=label_volume,
        probabilities=probability_volume,
        image=reference,
        names=dict(names),
        volumes=label_volumes(labels, reference.spacing, names),
        seconds=seconds,
        device=device,
        uncertainty=uncertainty_volume,
    )
