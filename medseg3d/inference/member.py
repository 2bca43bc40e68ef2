"""One model of a :class:`~medseg3d.inference.predictor.Predictor` and its inference.

A :class:`Member` is a loaded model folder with its own plan, patch size, overlap, activation
and output-channel -> label-value map; :func:`sliding_window` runs it over a preprocessed scan
(label-only, probabilities or logits, with mirror TTA) and :func:`mirror_passes` runs each mirror
combination as its own pass (for TTA uncertainty).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medseg3d.errors import ConfigError
from medseg3d.inference.model_folder import LoadedModel

logger = logging.getLogger(__name__)


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

    def describe(self) -> str:
        """``"unet 3D, labels: liver, kidney"``."""
        spec = self.loaded.model_spec
        names = ", ".join(name for name, value in self.loaded.labels.items() if value != 0)
        return f"{spec['name']} {spec['spatial_dims']}D, labels: {names}"


def sliding_window(
    member: Member,
    tensor: torch.Tensor,
    output: str,
    *,
    device: torch.device,
    batch_size: int,
    progress: bool = False,
    tta: bool = False,
    stitch_device=None,
    network=None,
) -> torch.Tensor:
    """``(1, C_in, *spatial)`` -> labels ``(1, 1, *spatial)`` or probabilities/logits
    ``(1, C, *spatial)`` on the CPU. Label maps are stitched on the compute device (a byte
    per voxel), the rest on the CPU; a CUDA out-of-memory error while stitching falls back
    to the CPU."""
    from medseg3d.inference.sliding_window import sliding_window_inference

    options = dict(
        overlap=member.overlap,
        mode="gaussian",
        batch_size=batch_size,
        output=output,
        activation=member.activation,
        mirror_axes=mirror_axes(member) if tta and network is None else None,
        out_channels=member.loaded.out_channels,
        progress=progress,
        compute_device=device,
    )
    if stitch_device is not None:
        stitch = torch.device(stitch_device)
    else:
        stitch = device if output == "labels" else torch.device("cpu")
    network = network or member.loaded.model
    patch = fitted_patch(member, tuple(tensor.shape[2:]))
    with torch.inference_mode():
        try:
            result = sliding_window_inference(tensor, network, patch, device=stitch, **options)
        except torch.cuda.OutOfMemoryError:
            if stitch.type != "cuda":
                raise
            logger.warning("out of GPU memory while stitching; stitching on the CPU instead")
            torch.cuda.empty_cache()
            result = sliding_window_inference(tensor, network, patch, device="cpu", **options)
    return result.cpu()


def mirror_passes(
    member: Member,
    tensor: torch.Tensor,
    *,
    device: torch.device,
    batch_size: int,
    progress: bool = False,
    stitch_device=None,
) -> list[torch.Tensor]:
    """Each mirror combination as its own pass (the same network evaluations as TTA):
    ``[tta probabilities, mean of the passes' probabilities, mean of their squares]``, each
    ``(C, *spatial)`` on the preprocessed grid. The first is exactly what TTA gives (the
    activation of the mean logits); the other two measure the spread of the passes."""
    flips = mirror_flips(member)
    logit_sum = pass_sum = square_sum = None
    with torch.inference_mode():
        for dims in flips:
            logits = sliding_window(
                member,
                tensor,
                "logits",
                device=device,
                batch_size=batch_size,
                progress=progress,
                stitch_device=stitch_device,
                network=Mirrored(member.loaded.model, dims),
            )[0]
            p = activate(logits, member.activation)
            if logit_sum is None:
                logit_sum, pass_sum, square_sum = logits, p.clone(), p.square()
            else:
                logit_sum += logits
                pass_sum += p
                square_sum += p.square()
            del logits, p
        count = float(len(flips))
        return [
            activate(logit_sum / count, member.activation),
            pass_sum / count,
            square_sum / count,
        ]


def mirror_axes(member: Member) -> tuple[int, ...]:
    """The spatial axes mirrored for TTA: the model folder's ``inference.mirror_axes``, or all."""
    axes = member.loaded.inference.get("mirror_axes")
    if axes is None:
        return tuple(range(member.loaded.spatial_dims))
    return tuple(int(a) for a in axes)


def mirror_flips(member: Member) -> list[tuple[int, ...]]:
    """Every mirror combination (the identity first) as tensor dims of ``(B, C, *spatial)``."""
    axes = sorted(set(mirror_axes(member)))
    return [
        tuple(axis + 2 for axis in combination)
        for count in range(len(axes) + 1)
        for combination in itertools.combinations(axes, count)
    ]


class Mirrored(torch.nn.Module):
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


def activate(logits: torch.Tensor, activation: str) -> torch.Tensor:
    """Softmax over the channel axis 0 of ``(C, *spatial)``, or sigmoid per channel."""
    return torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=0)


def fitted_patch(member: Member, spatial: Sequence[int]) -> tuple[int, ...]:
    """The inference patch for one scan of ``spatial`` size (preprocessed grid).

    An enlarged patch (``--patch-size``) larger than the scan on an axis would pad the scan with
    far more background than the network ever saw in training, which ruins the segmentation
    (a tiny CT at patch 160: Dice 0.97 -> 0.38) and costs time and memory for nothing. On such
    an axis the patch shrinks to the smallest valid size covering the scan, but never below the
    training patch (whose padding training did see).
    """
    trained = patch_size_for(member.loaded, None)
    divisor = int(getattr(member.loaded.model, "size_divisor", 1) or 1)
    fitted = []
    for size, train, extent in zip(member.patch_size, trained, spatial):
        covering = -(-int(extent) // divisor) * divisor
        fitted.append(min(size, max(train, covering)) if size > extent else size)
    fitted = tuple(fitted)
    if fitted != tuple(member.patch_size):
        logger.info(
            "patch %s is larger than the scan %s; using %s", member.patch_size, spatial, fitted
        )
    return fitted


def _whole(value) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)


def patch_size_for(loaded: LoadedModel, patch_size: int | Sequence[int] | None) -> tuple[int, ...]:
    spatial_dims = loaded.spatial_dims
    if patch_size is None:
        patch_size = loaded.inference["patch_size"]
    if isinstance(patch_size, str):  # "128" or "96,160,160" / "96x160x160"
        patch_size = [part for part in patch_size.replace("x", ",").split(",") if part.strip()]
    if not isinstance(patch_size, (list, tuple)):
        patch_size = [patch_size] * spatial_dims
    try:
        patch = tuple(_whole(p) for p in patch_size)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--patch-size needs {spatial_dims} positive whole sizes, got {patch_size!r}"
        ) from None
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


def channel_values(labels: dict[str, int], out_channels: int) -> tuple[int, ...]:
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


def load_members(
    folders: Sequence,
    weights: Sequence[float],
    device: torch.device,
    *,
    overlap: float | None = None,
    patch_size: int | Sequence[int] | None = None,
) -> tuple[list[Member], list]:
    """Load each model folder onto ``device`` -> ``(members, distinct plans)``; members that share
    a plan (cross-validation folds) share its index, so the scan is preprocessed once per plan."""
    from medseg3d.data.plan import Plan
    from medseg3d.inference.model_folder import load_model_folder

    members: list[Member] = []
    plans: list[Plan] = []
    plan_dicts: list[dict] = []
    for folder, weight in zip(folders, weights):
        loaded = load_model_folder(folder, device)
        plan = Plan.from_dict(loaded.plan)
        plan_dict = plan.to_dict()
        if plan_dict not in plan_dicts:
            plans.append(plan)
            plan_dicts.append(plan_dict)
        member_overlap = float(loaded.inference.get("overlap", 0.5) if overlap is None else overlap)
        if not 0.0 <= member_overlap < 1.0:
            raise ConfigError(f"--overlap must be in [0, 1), got {member_overlap}")
        activation = str(
            loaded.inference.get("activation")
            or ("sigmoid" if loaded.out_channels == 1 else "softmax")
        )
        if activation not in ("softmax", "sigmoid"):
            raise ConfigError(
                f"{folder}: inference.activation {activation!r} is not softmax or sigmoid"
            )
        if activation == "sigmoid" and loaded.out_channels > 1:
            raise ConfigError(
                f"{folder}: a multi-label model (sigmoid over {loaded.out_channels} channels) "
                "cannot be written as one label map, which holds one label per voxel; set "
                "inference.activation to softmax if its channels are exclusive classes"
            )
        members.append(
            Member(
                loaded=loaded,
                plan_index=plan_dicts.index(plan_dict),
                weight=weight,
                patch_size=patch_size_for(loaded, patch_size),
                overlap=member_overlap,
                activation=activation,
                values=channel_values(loaded.labels, loaded.out_channels),
            )
        )
        logger.info("loaded %s", loaded.path)
    return members, plans


def as_batch(image: np.ndarray) -> torch.Tensor:
    """A preprocessed ``(C, *spatial)`` image as a float32 batch of one ``(1, C, *spatial)``."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
