"""What every segmentation loss shares: the prepared target, activations, options, reductions.

A loss takes raw logits ``(B, C, *spatial)`` and a target in one of three layouts, detected from
its shape (MONAI's ``to_onehot_y`` is never needed):

* integer labels ``(B, 1, *spatial)`` or ``(B, *spatial)`` with values in ``[0, C)`` (any dtype
  holding whole numbers; float label maps as MONAI loaders produce them are accepted);
* one-hot, multi-hot or soft targets ``(B, C, *spatial)`` (floats in ``[0, 1]``);
* for a single output channel (binary), a 0/1 mask ``(B, 1, *spatial)``.

:class:`Prepared` turns one ``(logits, target)`` pair into the pieces the losses need and caches
them, so a compound loss (Dice + CE) computes the softmax and the one-hot target once.
Everything is computed in float32 (half / bfloat16 logits are up-cast).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from medseg3d.errors import ConfigError, ShapeError

REDUCTIONS = ("mean", "sum", "none")


# --- option checks (raised at construction, with the option name) --------------------------------
def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(
            f"loss option {name}={value!r} is not allowed; choose one of: {', '.join(allowed)}"
        )
    return value


def check_nonnegative(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"loss option {name} must be a number, got {value!r}") from None
    if not value >= 0:
        raise ConfigError(f"loss option {name} must be >= 0, got {value!r}")
    return value


def check_unit(name: str, value: float) -> float:
    value = check_nonnegative(name, value)
    if value > 1:
        raise ConfigError(f"loss option {name} must be in [0, 1], got {value!r}")
    return value


def as_class_values(name: str, value, *, unit: bool = False) -> torch.Tensor | None:
    """A scalar or per-class sequence (``weight``, ``alpha``) as a float32 tensor, checked >= 0."""
    if value is None:
        return None
    try:
        tensor = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(
            f"loss option {name} must be a number or a list of numbers, got {value!r}"
        ) from None
    if tensor.ndim > 1 or not torch.isfinite(tensor).all() or (tensor < 0).any():
        raise ConfigError(f"loss option {name} must be finite values >= 0, got {value!r}")
    if unit and (tensor > 1).any():
        raise ConfigError(f"loss option {name} must be in [0, 1], got {value!r}")
    return tensor


def resolve_sigmoid(sigmoid: bool, softmax: bool | None) -> bool:
    """``sigmoid=True`` -> per-channel sigmoid; otherwise softmax over channels (the default)."""
    if sigmoid and softmax:
        raise ConfigError(
            "loss options sigmoid=True and softmax=True exclude each other; set only one"
        )
    return bool(sigmoid)


def per_class(values: torch.Tensor | None, channels: int, drop_background: bool, name: str):
    """Select the per-class entries of ``values`` for the ``channels`` classes in use.

    A sequence may list all ``C`` classes or, when the background is excluded, only the ``C - 1``
    foreground classes (MONAI's convention); a scalar applies to every class.
    """
    if values is None or values.ndim == 0:
        return values
    kept = channels - 1 if drop_background else channels
    if drop_background and len(values) == channels:
        values = values[1:]
    if len(values) != kept:
        raise ConfigError(
            f"loss option {name} has {len(values)} values but the logits have {channels} channels "
            f"({kept} in use); give one value per class"
        )
    return values


def channel_view(values: torch.Tensor, dims: int) -> torch.Tensor:
    """Per-class values (K,) as a (1, K, 1, ...) tensor broadcasting over (B, K, *spatial)."""
    return values.view(1, -1, *([1] * (dims - 2)))


def reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


# --- the prepared target ------------------------------------------------------------------------
class Prepared:
    """Logits and target of one call, with lazily computed and cached derived tensors.

    Attributes: ``logits`` (B, C, *spatial) float32; ``sigmoid`` (bool, True for one channel);
    ``labels`` (B, *spatial) int64 or None (one-hot targets); ``mask`` (B, 1, *spatial) float32 of
    voxels that count, or None (no ``ignore_index``). Properties: ``onehot`` (B, C, *spatial),
    ``probs``, ``log_probs``.
    """

    def __init__(
        self, logits: torch.Tensor, target: torch.Tensor, *, sigmoid: bool, ignore_index=None
    ):
        if logits.dim() < 3:
            raise ShapeError(f"logits must have shape (B, C, *spatial), got {tuple(logits.shape)}")
        self.logits = logits.float()
        self.channels = logits.shape[1]
        self.sigmoid = bool(sigmoid) or self.channels == 1
        self.ignore_index = ignore_index
        self.mask: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None
        self._onehot: torch.Tensor | None = None
        self._probs: torch.Tensor | None = None
        self._log_probs: torch.Tensor | None = None
        spatial = tuple(logits.shape[2:])
        batch = logits.shape[0]
        if target.dim() == logits.dim() - 1 and tuple(target.shape) == (batch, *spatial):
            target = target.unsqueeze(1)
        if (
            target.dim() != logits.dim()
            or target.shape[0] != batch
            or tuple(target.shape[2:]) != spatial
        ):
            raise ShapeError(
                f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}; "
                "give labels (B, 1, *spatial) or (B, *spatial), or one-hot (B, C, *spatial)"
            )
        if target.shape[1] == 1 and (self.channels > 1 or not torch.is_floating_point(target)):
            self._set_labels(target[:, 0])
        elif target.shape[1] == self.channels:
            self._onehot = target.float()
            if ignore_index is not None:  # MONAI's create_ignore_mask for one-hot targets
                if 0 <= ignore_index < self.channels:
                    self.mask = 1.0 - self._onehot[:, ignore_index : ignore_index + 1]
                else:
                    self.mask = (self._onehot.sum(1, keepdim=True) > 0).float()
        else:
            raise ShapeError(
                f"target has {target.shape[1]} channels but logits have {self.channels}; "
                "give labels (B, 1, *spatial) or one-hot (B, C, *spatial)"
            )

    def _set_labels(self, labels: torch.Tensor) -> None:
        if torch.is_floating_point(labels):
            rounded = labels.round()
            if not torch.equal(rounded, labels):
                raise ShapeError(
                    "a single-channel target must hold whole-number labels; give soft targets "
                    "one-hot as (B, C, *spatial)"
                )
            labels = rounded
        labels = labels.long()
        if self.ignore_index is not None:
            keep = labels != self.ignore_index
            self.mask = keep.unsqueeze(1).float()
            labels = torch.where(keep, labels, torch.zeros_like(labels))
        if labels.numel():
            low, high = torch.stack(torch.aminmax(labels)).tolist()  # one device sync
            limit = max(self.channels, 2) if self.channels == 1 else self.channels
            if low < 0 or high >= limit:
                raise ShapeError(
                    f"target labels range over [{low}, {high}] but the logits have {self.channels} "
                    f"channel(s), so labels must lie in [0, {limit - 1}] (or be ignore_index)"
                )
        self.labels = labels

    # labels with ignored voxels set to ignore_index (what F.cross_entropy expects)
    def ce_labels(self) -> torch.Tensor:
        if self.mask is None or self.ignore_index is None:
            return self.labels
        return torch.where(
            self.mask[:, 0] > 0, self.labels, torch.full_like(self.labels, self.ignore_index)
        )

    @property
    def onehot(self) -> torch.Tensor:
        if self._onehot is None:
            labels = self.labels.unsqueeze(1)
            if self.channels == 1:
                self._onehot = labels.float()
            else:
                shape = (labels.shape[0], self.channels, *labels.shape[2:])
                self._onehot = torch.zeros(shape, device=labels.device).scatter_(1, labels, 1.0)
        return self._onehot

    @property
    def probs(self) -> torch.Tensor:
        if self._probs is None:
            fn = torch.sigmoid if self.sigmoid else lambda x: torch.softmax(x, 1)
            self._probs = fn(self.logits)
        return self._probs

    @property
    def log_probs(self) -> torch.Tensor:
        if self._log_probs is None:
            self._log_probs = (
                F.logsigmoid(self.logits) if self.sigmoid else F.log_softmax(self.logits, 1)
            )
        return self._log_probs

    def drop_background(self, include_background: bool) -> bool:
        """True when channel 0 is to be dropped (never for a single channel)."""
        return not include_background and self.channels > 1


class SegmentationLoss(nn.Module):
    """Base of the losses: options shared by all and the ``forward(logits, target)`` frame."""

    reductions: tuple[str, ...] = REDUCTIONS

    def __init__(
        self,
        *,
        include_background: bool = True,
        sigmoid: bool = False,
        softmax: bool | None = None,
        ignore_index: int | None = None,
        reduction: str = "mean",
        to_onehot_y: bool | None = None,
    ):
        super().__init__()
        self.include_background = bool(include_background)
        self.sigmoid = resolve_sigmoid(sigmoid, softmax)
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, int)
        ):
            raise ConfigError(
                f"loss option ignore_index must be an integer label, got {ignore_index!r}"
            )
        self.ignore_index = ignore_index
        self.reduction = check_choice("reduction", reduction, self.reductions)
        # ``to_onehot_y`` is accepted for MONAI configs: the target layout is detected from its shape.
        del to_onehot_y

    def prepare(self, logits: torch.Tensor, target: torch.Tensor) -> Prepared:
        return Prepared(logits, target, sigmoid=self.sigmoid, ignore_index=self.ignore_index)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, C, *spatial), ``target`` labels (B, 1, *spatial) / (B, *spatial) or one-hot."""
        return self.compute(self.prepare(logits, target))

    def compute(self, prepared: Prepared) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError
