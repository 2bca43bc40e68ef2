"""Random intensity augmentations, each a pair *sample* (numpy RandomState) / *apply* (torch).

Every class below is a small settings object with two methods:

* ``sample(rng, shape) -> params``: draws everything random for an image of ``shape``
  ``(C, *spatial)`` from a ``numpy.random.RandomState`` (MONAI's ``self.R``);
* ``apply(x, params) -> x``: deterministic, on a float32 tensor ``(C, *spatial)`` on any device.

Per-channel draws use ``None`` for "leave this channel alone" (``channel_prob``) and are made
channel after channel, so from one generator state a draw for 2 channels starts with the draw
for 1 (the dictionary transforms rely on this for keys of different channel counts). Defaults
follow nnU-Net v2's ``get_training_transforms``; ranges that straddle 1 are drawn like its
``BGContrast`` (half of the draws below 1, half above), so shrinking and growing are equally likely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import product

import numpy as np
import torch
import torch.nn.functional as F

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.nn import layers


def _check_range(
    value: Sequence[float], name: str, minimum: float = -math.inf
) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a (low, high) pair, got {value!r}") from None
    if not minimum <= low <= high:
        raise ConfigError(f"{name} must satisfy {minimum} <= low <= high, got {value!r}")
    return low, high


def _check_prob(value: float, name: str) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def sample_around_one(rng: np.random.RandomState, low: float, high: float) -> float:
    """nnU-Net's ``BGContrast``: below 1 or above 1 with equal chance when the range straddles 1."""
    if low < 1 < high:
        return float(rng.uniform(low, 1.0) if rng.uniform() < 0.5 else rng.uniform(1.0, high))
    return float(rng.uniform(low, high))


def _per_channel(rng, channels: int, channel_prob: float, draw) -> list:
    return [draw() if rng.uniform() < channel_prob else None for _ in range(channels)]


def _for_channels(x: torch.Tensor, params: Sequence, name: str) -> Sequence:
    """``params`` (one entry per channel) checked against the channels of ``x`` ``(C, *spatial)``."""
    if len(params) != x.shape[0]:
        raise ShapeError(
            f"{name} parameters were drawn for {len(params)} channel(s) but the image has "
            f"{x.shape[0]}; draw them with sample(rng, x.shape) for this image"
        )
    return params


def _channel_view(x: torch.Tensor, values: Sequence[float]) -> torch.Tensor:
    return torch.as_tensor(values, dtype=x.dtype, device=x.device).view(-1, *[1] * (x.dim() - 1))


@dataclass
class GaussianNoise:
    """Additive zero-mean Gaussian noise; ``std_range`` in intensity units (nnU-Net: (0, 0.1))."""

    std_range: Sequence[float] = (0.0, 0.1)

    def __post_init__(self):
        self.std_range = _check_range(self.std_range, "std_range", 0.0)

    def sample(self, rng, shape):
        return float(rng.uniform(*self.std_range)), int(rng.randint(0, 2**31 - 1))

    def apply(self, x: torch.Tensor, params) -> torch.Tensor:
        std, seed = params
        generator = torch.Generator(device=x.device).manual_seed(seed)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + noise * std


@dataclass
class GaussianBlur:
    """Gaussian smoothing, ``sigma_range`` in voxels, drawn per channel (and per axis)."""

    sigma_range: Sequence[float] = (0.5, 1.0)
    channel_prob: float = 0.5
    per_axis: bool = True

    def __post_init__(self):
        self.sigma_range = _check_range(self.sigma_range, "sigma_range", 0.0)
        self.channel_prob = _check_prob(self.channel_prob, "channel_prob")

    def sample(self, rng, shape):
        axes = len(shape) - 1

        def draw():
            sigmas = rng.uniform(*self.sigma_range, size=axes if self.per_axis else 1)
            return tuple(float(s) for s in np.broadcast_to(sigmas, (axes,)))

        return _per_channel(rng, shape[0], self.channel_prob, draw)

    def apply(self, x, params):
        channels = [
            gaussian_smooth(x[c], sigma) if sigma else x[c]
            for c, sigma in enumerate(_for_channels(x, params, "GaussianBlur"))
        ]
        return torch.stack(channels)


def gaussian_kernel(sigma: float, device=None) -> torch.Tensor:
    """Normalised 1D Gaussian, radius ``ceil(3 sigma)`` voxels."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    kernel = torch.exp(-0.5 * (t / max(sigma, 1e-6)) ** 2)
    return kernel / kernel.sum()


def gaussian_smooth(volume: torch.Tensor, sigma: Sequence[float]) -> torch.Tensor:
    """Separable Gaussian smoothing of one channel ``(*spatial)``, edges replicated."""
    dims = volume.dim()
    out = volume[None, None].float()
    for axis, s in enumerate(sigma):
        if s <= 0:
            continue
        kernel = gaussian_kernel(s, volume.device)
        radius = kernel.numel() // 2
        shape = [1, 1] + [1] * dims
        shape[2 + axis] = kernel.numel()
        pad = [0] * (2 * dims)
        pad[2 * (dims - 1 - axis)] = pad[2 * (dims - 1 - axis) + 1] = radius
        out = layers.conv_nd(F.pad(out, pad, mode="replicate"), kernel.view(shape))
    return out[0, 0]


@dataclass
class MultiplicativeBrightness:
    """Multiply each channel by a factor from ``multiplier_range`` (nnU-Net: (0.75, 1.25))."""

    multiplier_range: Sequence[float] = (0.75, 1.25)
    channel_prob: float = 1.0

    def __post_init__(self):
        self.multiplier_range = _check_range(self.multiplier_range, "multiplier_range", 0.0)
        self.channel_prob = _check_prob(self.channel_prob, "channel_prob")

    def sample(self, rng, shape):
        return _per_channel(
            rng, shape[0], self.channel_prob, lambda: sample_around_one(rng, *self.multiplier_range)
        )

    def apply(self, x, params):
        params = _for_channels(x, params, "MultiplicativeBrightness")
        return x * _channel_view(x, [1.0 if p is None else p for p in params])


@dataclass
class Contrast:
    """Scale each channel about its mean; ``preserve_range`` clips to the channel's old range."""

    contrast_range: Sequence[float] = (0.75, 1.25)
    preserve_range: bool = True
    channel_prob: float = 1.0

    def __post_init__(self):
        self.contrast_range = _check_range(self.contrast_range, "contrast_range", 0.0)
        self.channel_prob = _check_prob(self.channel_prob, "channel_prob")

    def sample(self, rng, shape):
        return _per_channel(
            rng, shape[0], self.channel_prob, lambda: sample_around_one(rng, *self.contrast_range)
        )

    def apply(self, x, params):
        out = []
        for channel, factor in zip(x, _for_channels(x, params, "Contrast")):
            if factor is not None:
                mean = channel.mean()
                changed = (channel - mean) * factor + mean
                if self.preserve_range:
                    changed = changed.clamp(channel.min(), channel.max())
                channel = changed
            out.append(channel)
        return torch.stack(out)


@dataclass
class Gamma:
    """``x -> x ** gamma`` on the channel rescaled to [0, 1]; ``invert`` applies it to ``-x``.

    ``retain_stats`` restores the channel's mean and standard deviation afterwards (nnU-Net).
    """

    gamma_range: Sequence[float] = (0.7, 1.5)
    invert: bool = False
    retain_stats: bool = True
    channel_prob: float = 1.0

    def __post_init__(self):
        self.gamma_range = _check_range(self.gamma_range, "gamma_range", 1e-6)
        self.channel_prob = _check_prob(self.channel_prob, "channel_prob")

    def sample(self, rng, shape):
        return _per_channel(
            rng, shape[0], self.channel_prob, lambda: sample_around_one(rng, *self.gamma_range)
        )

    def apply(self, x, params):
        out = []
        for channel, gamma in zip(x, _for_channels(x, params, "Gamma")):
            if gamma is not None:
                channel = -channel if self.invert else channel
                mean, std = channel.mean(), channel.std()
                low, high = channel.min(), channel.max()
                span = (high - low).clamp(min=1e-7)
                channel = ((channel - low) / span) ** gamma * span + low
                if self.retain_stats:
                    channel = (channel - channel.mean()) / channel.std().clamp(
                        min=1e-7
                    ) * std + mean
                channel = -channel if self.invert else channel
            out.append(channel)
        return torch.stack(out)


@dataclass
class LowResolution:
    """Down-sample (nearest) by a zoom from ``zoom_range`` and up-sample back (linear)."""

    zoom_range: Sequence[float] = (0.5, 1.0)
    channel_prob: float = 0.5
    per_axis: bool = False

    def __post_init__(self):
        self.zoom_range = _check_range(self.zoom_range, "zoom_range", 1e-3)
        self.channel_prob = _check_prob(self.channel_prob, "channel_prob")

    def sample(self, rng, shape):
        axes = len(shape) - 1

        def draw():
            zoom = np.broadcast_to(
                rng.uniform(*self.zoom_range, size=axes if self.per_axis else 1), (axes,)
            )
            return tuple(max(1, round(n * z)) for n, z in zip(shape[1:], zoom))

        return _per_channel(rng, shape[0], self.channel_prob, draw)

    def apply(self, x, params):
        out = []
        for channel, size in zip(x, _for_channels(x, params, "LowResolution")):
            if size is not None:
                small = layers.resize(channel[None, None], size, kind="nearest")
                channel = layers.resize(small, tuple(channel.shape), kind="linear")[0, 0]
            out.append(channel)
        return torch.stack(out)


@dataclass
class BiasField:
    """MRI bias field: multiply by ``exp`` of a random polynomial of ``order`` (as TorchIO)."""

    coefficient_range: float = 0.5
    order: int = 3

    def __post_init__(self):
        if self.order < 0 or self.coefficient_range < 0:
            raise ConfigError(f"BiasField needs order >= 0 and coefficient_range >= 0, got {self}")

    def sample(self, rng, shape):
        terms = [
            p for p in product(range(self.order + 1), repeat=len(shape) - 1) if sum(p) <= self.order
        ]
        values = rng.uniform(-self.coefficient_range, self.coefficient_range, len(terms))
        return list(zip(terms, values.tolist()))

    def apply(self, x, params):
        spatial = x.shape[1:]
        axes = [torch.linspace(-1, 1, n, device=x.device) for n in spatial]
        log_field = torch.zeros(spatial, device=x.device)
        for powers, value in params:
            term = torch.ones((), device=x.device)
            for axis, (coordinate, power) in enumerate(zip(axes, powers)):
                view = [1] * len(spatial)
                view[axis] = spatial[axis]
                term = term * (coordinate**power).view(view)
            log_field = log_field + value * term
        return x * torch.exp(log_field)[None].to(x.dtype)


@dataclass
class ScaleShiftIntensity:
    """``x * (1 + scale) + shift`` per channel, like MONAI's RandScaleIntensity/RandShiftIntensity."""

    scale_range: Sequence[float] = (-0.1, 0.1)
    shift_range: Sequence[float] = (-0.1, 0.1)
    channel_prob: float = 1.0

    def __post_init__(self):
        self.scale_range = _check_range(self.scale_range, "scale_range", -1.0)
        self.shift_range = _check_range(self.shift_range, "shift_range")
        self.channel_prob = _check_prob(self.channel_prob, "channel_prob")

    def sample(self, rng, shape):
        def draw():
            return float(rng.uniform(*self.scale_range)), float(rng.uniform(*self.shift_range))

        return _per_channel(rng, shape[0], self.channel_prob, draw)

    def apply(self, x, params):
        params = _for_channels(x, params, "ScaleShiftIntensity")
        scale = _channel_view(x, [1.0 if p is None else 1.0 + p[0] for p in params])
        shift = _channel_view(x, [0.0 if p is None else p[1] for p in params])
        return x * scale + shift
