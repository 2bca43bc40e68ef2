"""A model folder written by ``medseg3d train`` as MONAI parts, in one call.

>>> parts = load_model_folder_for_monai("models/liver")
>>> data = parts.preprocessing({"image": "scan.nii.gz"})          # LoadImaged ... PlanNormalized
>>> data["pred"] = parts.inferer(data["image"][None], parts.network)[0]
>>> data = parts.postprocessing(data)                               # back on the scan's grid
>>> # or simply: data = parts({"image": "scan.nii.gz"})

``preprocessing`` is the plan stored in the folder spelled with MONAI transforms
(``LoadImaged -> EnsureChannelFirstd -> Orientationd -> Spacingd -> PlanNormalized``),
``postprocessing`` inverts the resampling and orientation on the class probabilities
(``Invertd``), takes the arg-max (``AsDiscreted``), maps channel indices to label values and
optionally saves (``SaveImaged``). Both are ordinary ``monai.transforms.Compose`` objects: insert,
remove or replace steps as in any MONAI pipeline. The numbers differ from ``medseg3d predict`` only
by MONAI's resampler (a voxel or so at boundaries); ``medseg3d predict`` stays the reference.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    Invertd,
    LoadImaged,
    MapLabelValued,
    Orientationd,
    SaveImaged,
    Spacingd,
)
from torch import nn

from medseg3d.data.plan import Plan
from medseg3d.inference.model_folder import LoadedModel, load_model_folder
from medseg3d.monai.transforms import PlanNormalized

#: MONAI spline orders for the plan's image interpolation (labels are always "nearest").
SPLINE_ORDER = {"nearest": 0, "linear": 1, "cubic": 3}


@dataclass
class MonaiModel:
    """A model folder as MONAI parts: network (eval mode), inferer and the two transform chains."""

    network: nn.Module
    inferer: Any  # medseg3d.inference.SlidingWindowInferer, a monai.inferers.Inferer
    preprocessing: Compose
    postprocessing: Compose
    labels: dict[str, int]
    plan: Plan
    loaded: LoadedModel
    image_key: str = "image"
    pred_key: str = "pred"

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    def __call__(self, data: Mapping[Hashable, Any] | str | os.PathLike) -> dict[Hashable, Any]:
        """Pre-process, infer and post-process one case: ``{"image": path}`` (or a path) ->
        the dict with ``pred``, a ``(1, *spatial)`` label map on the input's grid."""
        if not isinstance(data, Mapping):
            data = {self.image_key: os.fspath(data)}
        d = self.preprocessing(dict(data))
        image = d[self.image_key]
        with torch.inference_mode():
            d[self.pred_key] = self.inferer(image[None].to(self.device), self.network)[0].cpu()
        return self.postprocessing(d)


def load_model_folder_for_monai(
    model_dir: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    image_key: str = "image",
    pred_key: str = "pred",
    overlap: float | None = None,
    batch_size: int = 4,
    output_dir: str | os.PathLike | None = None,
    output_postfix: str = "seg",
) -> MonaiModel:
    """Load ``model_dir`` (written by ``medseg3d train``) as MONAI network, inferer and transforms.

    Args:
        device: where the network runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        image_key, pred_key: dictionary keys of the image and the prediction.
        overlap: sliding-window overlap (default: the model folder's).
        batch_size: windows per forward pass.
        output_dir: when given, ``postprocessing`` ends with ``SaveImaged`` writing
            ``<name>_<output_postfix>.nii.gz`` there.

    The inferer returns class probabilities ``(B, C, *spatial)``; ``postprocessing`` turns them
    into a label map ``(1, *spatial)`` with the label values of ``model.yaml``.
    """
    from medseg3d.inference.inferer import SlidingWindowInferer

    loaded = load_model_folder(model_dir, device=device)
    plan = Plan.from_dict(loaded.plan)
    activation = str(
        loaded.inference.get("activation") or ("sigmoid" if loaded.out_channels == 1 else "softmax")
    )
    inferer = SlidingWindowInferer(
        [int(p) for p in loaded.inference["patch_size"]],
        overlap=float(loaded.inference.get("overlap", 0.5) if overlap is None else overlap),
        mode="gaussian",
        batch_size=batch_size,
        output="probabilities",
        activation=activation,
        out_channels=loaded.out_channels,
    )
    preprocessing = build_preprocessing(plan, image_key=image_key)
    postprocessing = build_postprocessing(
        preprocessing,
        labels=loaded.labels,
        out_channels=loaded.out_channels,
        activation=activation,
        image_key=image_key,
        pred_key=pred_key,
        output_dir=output_dir,
        output_postfix=output_postfix,
    )
    return MonaiModel(
        network=loaded.model,
        inferer=inferer,
        preprocessing=preprocessing,
        postprocessing=postprocessing,
        labels=dict(loaded.labels),
        plan=plan,
        loaded=loaded,
        image_key=image_key,
        pred_key=pred_key,
    )


def build_preprocessing(plan: Plan, *, image_key: str = "image", load: bool = True) -> Compose:
    """The plan's preprocessing as MONAI transforms on ``{image_key: path or (C, *spatial)}``.

    ``LoadImaged`` (when ``load``) -> ``EnsureChannelFirstd`` -> ``Orientationd(plan.orientation)``
    -> ``Spacingd(plan.target_spacing)`` -> :class:`PlanNormalized` -> float32.
    """
    steps: list[Any] = []
    if load:
        steps.append(LoadImaged(keys=image_key, image_only=True))
    steps.append(EnsureChannelFirstd(keys=image_key))
    if plan.orientation:
        steps.append(Orientationd(keys=image_key, axcodes=plan.orientation))
    steps.append(
        Spacingd(
            keys=image_key,
            pixdim=[float(s) for s in plan.target_spacing],
            mode=SPLINE_ORDER.get(plan.image_interpolation, 1),
        )
    )
    steps.append(PlanNormalized(keys=image_key, normalization=plan.normalization))
    steps.append(EnsureTyped(keys=image_key, dtype=torch.float32))
    return Compose(steps)


def build_postprocessing(
    preprocessing: Compose,
    *,
    labels: Mapping[str, int],
    out_channels: int,
    activation: str = "softmax",
    image_key: str = "image",
    pred_key: str = "pred",
    output_dir: str | os.PathLike | None = None,
    output_postfix: str = "seg",
) -> Compose:
    """Probabilities ``(C, *spatial)`` on the plan's grid -> label map ``(1, *spatial)`` on the
    input's grid: ``Invertd`` (linear on probabilities), arg-max or threshold, label values."""
    steps: list[Any] = [
        Invertd(
            keys=pred_key,
            transform=preprocessing,
            orig_keys=image_key,
            nearest_interp=False,
            to_tensor=True,
        )
    ]
    if activation == "sigmoid":
        steps.append(AsDiscreted(keys=pred_key, threshold=0.5))
    else:
        steps.append(AsDiscreted(keys=pred_key, argmax=True))
    values = _channel_values(labels, out_channels)
    if values != list(range(len(values))):
        steps.append(
            MapLabelValued(
                keys=pred_key, orig_labels=list(range(len(values))), target_labels=values
            )
        )
    if output_dir is not None:
        steps.append(
            SaveImaged(
                keys=pred_key,
                output_dir=os.fspath(output_dir),
                output_postfix=output_postfix,
                output_dtype="uint8" if max(values) < 256 else "int16",
                resample=False,
                separate_folder=False,
                print_log=False,
            )
        )
    return Compose(steps)


def _channel_values(labels: Mapping[str, int], out_channels: int) -> list[int]:
    """Label value of each output channel: sorted label values when they fill the channels."""
    values = sorted({int(v) for v in labels.values()})
    if out_channels == 1 and len(values) == 2:  # sigmoid: index 1 is the one foreground label
        return values
    return values if len(values) == out_channels else list(range(out_channels))
