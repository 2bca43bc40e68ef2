"""Moving windows between devices: gather windows into a batch on the compute device, copy
predictions back without blocking, pick the compute device, show progress.

With the network on CUDA and stitching on the CPU, windows go up from pinned memory and
predictions come back with ``non_blocking`` copies whose completion is awaited only when the
stitcher needs them, so the CPU stitches one batch while the GPU computes the next.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Transfer:
    """A (possibly asynchronous) copy of ``tensor`` to ``device``; :meth:`wait` before use."""

    def __init__(self, tensor: torch.Tensor, device: torch.device):
        self.event = None
        if tensor.device == device:
            self.tensor = tensor
            return
        self.tensor = tensor.to(device, non_blocking=True)
        if tensor.device.type == "cuda":
            self.event = torch.cuda.Event()
            self.event.record()

    def wait(self) -> torch.Tensor:
        if self.event is not None:
            self.event.synchronize()
        return self.tensor


def gather(
    padded: torch.Tensor,
    keys: Sequence[tuple[int, Sequence[int]]],
    starts: Sequence[Sequence[int]],
    patch: Sequence[int],
    device: torch.device,
) -> torch.Tensor:
    """The windows ``keys`` = ``(item, window index)`` of ``padded`` as ``(N, C, *patch)`` on ``device``."""
    windows = [
        padded[
            (
                item,
                slice(None),
                *(slice(starts[d][k], starts[d][k] + patch[d]) for d, k in enumerate(window)),
            )
        ]
        for item, window in keys
    ]
    batch = torch.stack(windows)
    if batch.device == device:
        return batch
    if batch.device.type == "cpu" and device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def pick_compute_device(compute_device, predictor, inputs: torch.Tensor) -> torch.device:
    """``compute_device``, else the device of the network's parameters, else the input's."""
    if compute_device is not None:
        return torch.device(compute_device)
    network = getattr(predictor, "func", predictor)  # functools.partial(network, ...)
    if isinstance(network, nn.Module):
        parameter = next(network.parameters(), None)
        if parameter is not None:
            return parameter.device
    return inputs.device


class Progress:
    """tqdm over windows when ``enabled``; a no-op otherwise (tqdm is imported only then)."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="window", desc="sliding window", leave=False)

    def update(self, count: int):
        if self.bar is not None:
            self.bar.update(count)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
