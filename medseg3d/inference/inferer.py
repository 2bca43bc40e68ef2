"""``SlidingWindowInferer``: our sliding window as a MONAI ``Inferer``.

Usable wherever MONAI expects one, e.g. ``SupervisedEvaluator(inferer=SlidingWindowInferer(...))``
or ``monai.apps`` bundles: ``inferer(inputs, network, *args, **kwargs)`` runs
:func:`~medseg3d.inference.sliding_window.sliding_window_inference` with ``network(window, *args,
**kwargs)`` as the predictor.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from medseg3d.inference.sliding_window import WindowStats, sliding_window_inference


class SlidingWindowInferer(Inferer):
    """Bounded-memory sliding-window inference with medseg3d's options.

    Args:
        patch_size: window size in voxels (one int or one per spatial axis).
        **options: any keyword of :func:`sliding_window_inference` (``overlap``, ``mode``,
            ``sigma_scale``, ``batch_size``, ``output``, ``activation``, ``average``, ``dtype``,
            ``mirror_axes``, ``skip_below``, ``out_channels``, ``padding_mode``, ``cval``,
            ``compute_device``, ``device``, ``progress``).

    After each call, :attr:`last_stats` holds the :class:`WindowStats` of that call.

    Example::

        inferer = SlidingWindowInferer((96, 96, 96), overlap=0.5, output="labels")
        labels = inferer(image, model)            # (B, 1, *spatial) uint8
    """

    def __init__(self, patch_size: int | Sequence[int], **options: Any):
        super().__init__()
        if "return_stats" in options or "skip_mask" in options:
            raise TypeError(
                "give skip_mask per call (inferer(x, net, skip_mask=m)); stats: .last_stats"
            )
        known = set(inspect.signature(sliding_window_inference).parameters)
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"SlidingWindowInferer got unknown options {unknown}")
        self.patch_size = patch_size
        self.options = options
        self.last_stats: WindowStats | None = None

    def __call__(
        self,
        inputs: torch.Tensor,
        network: Callable[..., Any],
        *args: Any,
        skip_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Predict ``inputs`` ``(B, C_in, *spatial)``; extra arguments go to ``network``."""
        predictor = functools.partial(network, *args, **kwargs) if args or kwargs else network
        if predictor is not network:
            for name in ("out_channels", "size_divisor"):
                if hasattr(network, name):
                    setattr(predictor, name, getattr(network, name))
        result, self.last_stats = sliding_window_inference(
            inputs,
            predictor,
            self.patch_size,
            skip_mask=skip_mask,
            return_stats=True,
            **self.options,
        )
        return result

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"SlidingWindowInferer(patch_size={self.patch_size!r}{', ' if options else ''}{options})"
