"""Training batches drawn by index, so a resumed run sees exactly the batches it would have seen.

Sample ``s`` of the run is ``patches[s]`` (its patch position drawn from ``(seed, s)``) followed
by the augmentation seeded by ``(seed, s)``; batch ``i`` of process ``r`` holds samples
``i * global_batch + r * batch_size + k``. Nothing depends on the number of DataLoader workers,
on which worker draws a sample, or on where a run was interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

Sample = dict[str, Any]


def sample_seed(seed: int, index: int, stream: int = 1) -> int:
    """A 31-bit seed for sample ``index`` of the run seeded ``seed``."""
    return int(np.random.default_rng([seed, stream, index]).integers(2**31 - 1))


class AugmentedSamples(torch.utils.data.Dataset):
    """``patches[index]`` then ``augment`` re-seeded for ``index`` (a MONAI ``Compose`` or None)."""

    def __init__(self, patches: torch.utils.data.Dataset, augment: Callable | None, seed: int):
        self.patches = patches
        self.augment = augment
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.patches)

    def __getitem__(self, index: int) -> Sample:
        sample = self.patches[index]
        if self.augment is not None:
            seed = sample_seed(self.seed, index)
            if hasattr(self.augment, "set_random_state"):
                self.augment.set_random_state(seed=seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                sample = self.augment(sample)
        return {
            "image": torch.as_tensor(sample["image"]).as_subclass(torch.Tensor).float(),
            "label": torch.as_tensor(sample["label"]).as_subclass(torch.Tensor).long(),
        }


class IterationBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Index lists for iterations ``start .. total - 1`` of process ``rank`` of ``world_size``."""

    def __init__(self, start: int, total: int, batch_size: int, rank: int = 0, world_size: int = 1):
        self.start, self.total = int(start), int(total)
        self.batch_size, self.rank, self.world_size = int(batch_size), int(rank), int(world_size)

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        global_batch = self.batch_size * self.world_size
        for iteration in range(self.start, self.total):
            first = iteration * global_batch + self.rank * self.batch_size
            yield list(range(first, first + self.batch_size))


def make_batches(
    samples: torch.utils.data.Dataset,
    *,
    total: int,
    batch_size: int,
    num_workers: int,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
) -> Callable[[int], Iterator[dict[str, torch.Tensor]]]:
    """``batches(start)`` iterates over the batches of iterations ``start .. total - 1``."""

    def batches(start: int) -> Iterator[dict[str, torch.Tensor]]:
        loader = torch.utils.data.DataLoader(
            samples,
            batch_sampler=IterationBatchSampler(start, total, batch_size, rank, world_size),
            num_workers=num_workers,
            pin_memory=pin_memory,
            # a private generator: creating the loader must not consume the global torch RNG,
            # which the checkpoint restores for dropout and initialisation
            generator=torch.Generator().manual_seed(0),
            persistent_workers=False,
            prefetch_factor=4 if num_workers else None,
        )
        yield from loader

    return batches
