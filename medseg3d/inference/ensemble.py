"""Model ensembles: the averaging and uncertainty math, as a small functional core.

An ensemble averages the class probabilities of several model folders (cross-validation folds,
or different architectures trained on the same labels) on the *input* grid, before the argmax.
Members are added one at a time to a :class:`ProbabilityAccumulator`: a single running weighted
sum ``sum_m w_m p_m`` (channels last, ``(*spatial, C)``), so memory does not grow with the number
of members.

Uncertainty is measured over the *passes*: each member's prediction, or with mirror test-time
augmentation each of its mirrored predictions (a member's weight is split evenly over its passes):

* ``"entropy"``: entropy of the mean probabilities, divided by ``log C`` (``log 2`` per channel for
  sigmoid outputs), so 0 = certain, 1 = uniform;
* ``"variance"``: the mean over classes of the per-class variance across passes,
  ``E[p^2] - E[p]^2`` from running sums of ``p`` and ``p^2`` (in [0, 0.25]).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from medseg3d.errors import CheckpointError, ConfigError

UNCERTAINTIES = ("entropy", "variance")
ACCUMULATE_DTYPES = {"float32": np.float32, "float16": np.float16}
#: Voxel planes (first spatial axis) processed at once, so temporaries stay one slab in size.
_SLAB = 8


def normalize_weights(weights: Sequence[float] | None, count: int) -> tuple[float, ...]:
    """Per-member weights summing to 1 (equal when ``weights`` is None). Refuses a wrong count,
    negative or non-finite values, and an all-zero list (:class:`ConfigError`)."""
    if weights is None:
        return tuple([1.0 / count] * count)
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ConfigError(
            f"--model-weights: {len(values)} weight(s) for {count} model(s); give one per -m"
        )
    if any(not math.isfinite(w) or w < 0 for w in values) or sum(values) <= 0:
        raise ConfigError(f"--model-weights must be finite, >= 0 and not all 0, got {values}")
    total = sum(values)
    return tuple(w / total for w in values)


def check_uncertainty(kind: str | None, passes: int) -> None:
    """Refuse an unknown uncertainty, or a variance over a single pass (always 0)."""
    if kind is None:
        return
    if kind not in UNCERTAINTIES:
        raise ConfigError(f"--uncertainty {kind!r}: choose one of {', '.join(UNCERTAINTIES)}")
    if kind == "variance" and passes < 2:
        raise ConfigError(
            "--uncertainty variance needs at least two passes: give two or more models (-m) "
            "or --tta; or use --uncertainty entropy"
        )


def accumulate_dtype(name: str | np.dtype | type) -> type:
    """``"float32"`` (default) or ``"float16"`` (half the memory of the running sums)."""
    key = np.dtype(name).name if not isinstance(name, str) else name
    if key not in ACCUMULATE_DTYPES:
        raise ConfigError(
            f"accumulate dtype {name!r}: choose one of {', '.join(ACCUMULATE_DTYPES)}"
        )
    return ACCUMULATE_DTYPES[key]


def check_members_agree(members: Sequence[tuple[str | os.PathLike, Mapping]]) -> None:
    """Refuse (one :class:`CheckpointError` line) members that cannot be averaged.

    ``members``: ``(model folder, model.yaml as a dict)`` pairs. They must have the same label
    names and values, the same number of input channels (in the same order, by name) and the
    same spatial dimensions; the message names both folders and what differs.
    """
    first_path, first = members[0]
    for path, other in members[1:]:
        labels_a = {str(k): int(v) for k, v in first["labels"].items()}
        labels_b = {str(k): int(v) for k, v in other["labels"].items()}
        if labels_a != labels_b:
            only_a = {k: v for k, v in labels_a.items() if labels_b.get(k) != v}
            only_b = {k: v for k, v in labels_b.items() if labels_a.get(k) != v}
            raise CheckpointError(
                f"models {first_path} and {path} disagree on labels ({_labels(only_a)} vs "
                f"{_labels(only_b)}); an ensemble needs the same label names and values"
            )
        for key, what in (
            ("spatial_dims", "spatial dimensions"),
            ("in_channels", "input channels"),
        ):
            a, b = int(first["model"][key]), int(other["model"][key])
            if a != b:
                raise CheckpointError(
                    f"models {first_path} and {path} differ in {what} ({a} vs {b}); an "
                    "ensemble needs models of the same input"
                )
        names_a = [str(n).upper() for n in first.get("plan", {}).get("channel_names", [])]
        names_b = [str(n).upper() for n in other.get("plan", {}).get("channel_names", [])]
        if names_a and names_b and names_a != names_b:
            raise CheckpointError(
                f"models {first_path} and {path} take different input channels ({names_a} vs "
                f"{names_b}); an ensemble needs the same channels in the same order"
            )


def _labels(labels: Mapping[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(labels.items(), key=lambda i: i[1])) + "}"


def output_layout(out_channels: Sequence[int], activations: Sequence[str]) -> int:
    """The number of probability channels of the ensemble: the members' own when they agree; a
    one-channel sigmoid member beside two-channel members is expanded to ``(1 - p, p)``."""
    layouts = set(zip(out_channels, activations))
    if len(layouts) == 1:
        return int(out_channels[0])
    if layouts <= {(1, "sigmoid"), (2, "softmax")}:
        return 2
    raise ConfigError(
        f"the models' outputs cannot be averaged: {sorted(layouts)} (channels, activation); an "
        "ensemble needs the same output channels"
    )


def to_layout(probabilities: np.ndarray, channels: int) -> np.ndarray:
    """``(*spatial, 1)`` sigmoid foreground -> ``(*spatial, 2)`` ``(1 - p, p)`` when the ensemble
    has two channels; anything else is returned unchanged."""
    if probabilities.shape[-1] == 1 and channels == 2:
        return np.concatenate([1.0 - probabilities, probabilities], axis=-1)
    return probabilities


def accumulate(target: np.ndarray, source: np.ndarray, weight: float, *, square: bool = False):
    """``target += weight * source`` (``source ** 2`` with ``square``), slab by slab along the
    first axis, so temporaries stay small; ``target`` may be float16 (the sum is taken in
    float32 per slab)."""
    for start in range(0, source.shape[0], _SLAB):
        part = np.asarray(source[start : start + _SLAB], dtype=np.float32)
        part = part * part if square else part.copy()
        part *= weight
        part += target[start : start + _SLAB]
        target[start : start + _SLAB] = part


class ProbabilityAccumulator:
    """Running weighted sums of the members' probabilities ``(*spatial, C)`` on one grid.

    ``separate_passes``: the uncertainty is taken over passes that differ from the members'
    predictions (mirror TTA), so their mean is kept apart; ``squares``: also sum ``p^2`` for the
    variance. Memory: one array of ``C * N`` values of ``dtype`` per running sum.
    """

    def __init__(self, *, dtype=np.float32, separate_passes: bool = False, squares: bool = False):
        self.dtype = accumulate_dtype(dtype)
        self.separate_passes = separate_passes
        self.squares = squares
        self.sum: np.ndarray | None = None
        self.pass_sum: np.ndarray | None = None
        self.square_sum: np.ndarray | None = None
        self.weight = 0.0

    def add(
        self,
        probabilities: np.ndarray,
        weight: float,
        *,
        pass_mean: np.ndarray | None = None,
        pass_square_mean: np.ndarray | None = None,
        consume: bool = False,
    ) -> None:
        """Add one member: its probabilities ``(*spatial, C)`` with ``weight``; with separate
        passes, also the mean of its passes' probabilities and of their squares. ``consume``:
        the first member's float32 array may become the running sum itself (scaled in place),
        so the first member costs no extra copy."""
        first = self.sum is None
        if not first and probabilities.shape != self.sum.shape:
            raise ConfigError(
                f"member probabilities {probabilities.shape} do not match the ensemble's "
                f"{self.sum.shape}"
            )
        # the squares and the passes first: they read the probabilities before any scaling
        if self.squares:
            if first:
                self.square_sum = np.zeros(probabilities.shape, self.dtype)
            if pass_square_mean is None:
                accumulate(self.square_sum, probabilities, weight, square=True)
            else:
                accumulate(self.square_sum, pass_square_mean, weight)
        if self.separate_passes:
            if first:
                self.pass_sum = np.zeros(probabilities.shape, self.dtype)
            accumulate(self.pass_sum, probabilities if pass_mean is None else pass_mean, weight)
        if first and consume and self.dtype == np.float32 and probabilities.dtype == np.float32:
            self.sum = probabilities
            if weight != 1.0:
                self.sum *= np.float32(weight)
        else:
            if first:
                self.sum = np.zeros(probabilities.shape, self.dtype)
            accumulate(self.sum, probabilities, weight)
        self.weight += float(weight)

    def mean(self) -> np.ndarray:
        """The weighted mean probabilities ``(*spatial, C)`` float32 (the running sum itself
        when it is float32 and the weights sum to 1)."""
        return _mean(self.sum, self.weight)

    def uncertainty(self, kind: str, activation: str = "softmax") -> np.ndarray:
        """The voxel-wise uncertainty ``(*spatial)`` float32 over the passes (module docstring)."""
        passes = self.pass_sum if self.separate_passes else self.sum
        mean = _mean(passes, self.weight)
        if kind == "entropy":
            return normalized_entropy(mean, activation)
        if kind == "variance":
            if self.square_sum is None:
                raise ConfigError("the variance needs squares=True when accumulating")
            return class_variance(mean, _mean(self.square_sum, self.weight))
        raise ConfigError(f"uncertainty {kind!r}: choose one of {', '.join(UNCERTAINTIES)}")


def _mean(total: np.ndarray, weight: float) -> np.ndarray:
    if total.dtype == np.float32 and weight == 1.0:
        return total
    mean = total.astype(np.float32)
    if weight != 1.0:
        mean /= weight
    return mean


def normalized_entropy(probabilities: np.ndarray, activation: str = "softmax") -> np.ndarray:
    """Entropy of ``(*spatial, C)`` probabilities in [0, 1] ``(*spatial)`` float32.

    Softmax: ``-sum_c p_c log p_c / log C``. Sigmoid: the binary entropy of each channel
    (``p`` vs ``1 - p``) divided by ``log 2``, averaged over channels.
    """
    channels = probabilities.shape[-1]
    out = np.empty(probabilities.shape[:-1], np.float32)
    binary = activation == "sigmoid"
    scale = math.log(2.0) * channels if binary else math.log(max(channels, 2))
    for start in range(0, probabilities.shape[0], _SLAB):
        p = np.clip(np.asarray(probabilities[start : start + _SLAB], np.float32), 0.0, 1.0)
        value = _plogp(p).sum(-1)
        if binary:
            value += _plogp(1.0 - p).sum(-1)
        out[start : start + _SLAB] = np.clip(-value / scale, 0.0, 1.0)
    return out


def _plogp(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)


def class_variance(mean: np.ndarray, mean_of_squares: np.ndarray) -> np.ndarray:
    """Mean over classes of ``E[p^2] - E[p]^2`` ``(*spatial)`` float32, clipped at 0 (rounding)."""
    out = np.empty(mean.shape[:-1], np.float32)
    for start in range(0, mean.shape[0], _SLAB):
        m = np.asarray(mean[start : start + _SLAB], np.float32)
        squares = np.asarray(mean_of_squares[start : start + _SLAB], np.float32)
        out[start : start + _SLAB] = np.clip(squares - m * m, 0.0, None).mean(-1)
    return out


def argmax(probabilities: np.ndarray) -> np.ndarray:
    """Channel index per voxel of ``(*spatial, C)`` as uint8 (int16 above 256 channels), slab by
    slab (no int64 map of the whole volume); ``p > 0.5`` for one sigmoid channel."""
    channels = probabilities.shape[-1]
    out = np.empty(probabilities.shape[:-1], np.uint8 if channels <= 256 else np.int16)
    for start in range(0, len(out), 8):
        part = probabilities[start : start + 8]
        out[start : start + 8] = part[..., 0] > 0.5 if channels == 1 else np.argmax(part, -1)
    return out
