"""Cell-wise stitching: accumulate weighted window predictions, finish each cell when complete.

A *cell* (see :class:`~medseg3d.inference.windows.CellPlan`) is a box of voxels between window
edges. The stitcher holds one float32 tensor ``(C + 1, *cell)`` per cell that has
received a prediction (class scores times the importance map, plus the summed weights). When the
last window touching a cell has gone by (predicted or skipped), the cell is divided by its weight,
turned into the requested output (logits, probabilities or labels) and written into the output
tensor, and its buffer is freed. The scores of the whole image therefore never exist at once.

Label mode skips the division and the activation where they cannot change the result
(``scale_free``): the argmax over classes is invariant to a positive per-voxel scale (the weight
sum) and to softmax, and ``sigmoid(x / w) > 0.5`` is ``x > 0`` for ``w > 0``. Without skipped
windows every voxel has a positive weight, so the weight channel is not kept at all. Labels then
equal the argmax of the probabilities the probability mode returns except where rounding makes
two classes' probabilities exactly equal (both pick the lower class index on an exact tie).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import torch

from medseg3d.inference.windows import CellPlan

#: Logit given to non-background classes where every window was skipped (softmax gives exactly 0).
FILL_LOGIT = -1.0e4


def softmax_(scores: torch.Tensor) -> torch.Tensor:
    """Softmax over the channel axis 0 of ``(C, *cell)``, in place (faster than ``torch.softmax``
    over a leading axis, and no second copy of the scores)."""
    scores.sub_(scores.amax(0, keepdim=True)).exp_()
    return scores.div_(scores.sum(0, keepdim=True))


def argmax_channels(scores: torch.Tensor) -> torch.Tensor:
    """Index of the first maximum over axis 0 of ``(C, *cell)`` as ``(1, *cell)`` uint8 (int16
    above 256 channels): ``torch.argmax(scores, 0)``, by a running maximum over contiguous planes,
    which is several times faster than reducing over a leading axis."""
    best = scores[0].clone()
    labels = torch.zeros(scores.shape[1:], dtype=torch.uint8 if len(scores) <= 256 else torch.int16)
    labels = labels.to(scores.device)
    for channel in range(1, len(scores)):
        labels.masked_fill_(scores[channel] > best, channel)
        torch.maximum(best, scores[channel], out=best)
    return labels[None]


def is_scale_free(output: str, activation: str, *, activated: bool = False) -> bool:
    """Whether the finished output ignores a positive per-voxel scale of the summed scores:
    labels by argmax (softmax), or sigmoid labels of averaged logits (the sign decides)."""
    return output == "labels" and (activation == "softmax" or not activated)


def make_finisher(
    output: str, activation: str, *, activated: bool = False, scale_free: bool = False
) -> Callable[[torch.Tensor], torch.Tensor]:
    """What a finished cell of scores ``(C, *cell)`` becomes in the output (may work in place).

    ``output``: ``"logits"`` (unchanged), ``"probabilities"`` (``activation`` over channels) or
    ``"labels"`` (argmax of the softmax, ``(1, *cell)``; with ``"sigmoid"``: ``p > 0.5`` per
    channel). ``activated``: the scores already are probabilities (averaged per window).
    ``scale_free``: the scores are weighted sums not divided by the weight (see
    :func:`is_scale_free`); labels are then taken without the activation.
    """
    if scale_free:
        if activation == "softmax":
            return argmax_channels
        return lambda scores: scores > 0

    def activate(scores: torch.Tensor) -> torch.Tensor:
        if activated:
            return scores
        if activation == "sigmoid":
            return scores.sigmoid_()
        return softmax_(scores)

    if output == "logits":
        return lambda scores: scores
    if output == "probabilities":
        return activate
    if activation == "sigmoid":
        return lambda scores: activate(scores) > 0.5
    return lambda scores: argmax_channels(activate(scores))


class CellStitcher:
    """Stitches the windows of ``(B, C, *spatial)`` images into ``out``, cell by cell.

    Args:
        plan: the cell partition of the padded image.
        padding: ``(before, after)`` voxels of padding per axis; the output is cropped back.
        out: the output tensor ``(B, C_out, *spatial)`` (unpadded), written exactly once per voxel.
        finish: :func:`make_finisher` for the output mode.
        fill: scores ``(C,)`` for cells no predicted window covered (background).
        device: where the cell buffers live (the stitching device).
        divide: divide the summed scores by the summed weights before ``finish`` (False for a
            scale-free ``finish``, see :func:`is_scale_free`).
        track_unseen: keep a weight channel to find voxels that only skipped windows reached
            (always kept when ``divide``); without it every voxel must be covered by an added window.

    Windows must be reported in lexicographic order of their start indices (first axis slowest),
    batch item by batch item, each exactly once, through :meth:`add` or :meth:`skip`.
    """

    def __init__(
        self,
        plan: CellPlan,
        padding: Sequence[tuple[int, int]],
        out: torch.Tensor,
        finish: Callable[[torch.Tensor], torch.Tensor],
        fill: torch.Tensor,
        device: torch.device,
        *,
        divide: bool = True,
        track_unseen: bool = True,
    ):
        self.plan = plan
        self.padding = [before for before, _ in padding]
        self.out = out
        self.finish = finish
        self.device = device
        self.channels = fill.numel()
        self.divide = divide
        self.weighted = divide or track_unseen
        self.fill_scores = fill.to(device, torch.float32).reshape(-1, *[1] * len(padding))
        self.fill_output = finish(self.fill_scores.clone())
        self.cells: dict[tuple, torch.Tensor] = {}
        self.live_bytes = 0
        self.peak_bytes = 0
        # ending[d][k]: cell intervals along d whose last touching window start is k.
        self.ending = [
            [[j for j, last in enumerate(lasts) if last == k] for k in range(len(axis_pieces))]
            for lasts, axis_pieces in zip(plan.last, plan.pieces)
        ]

    def add(self, item: int, window: Sequence[int], scores: torch.Tensor, weight: torch.Tensor):
        """Add one window's weighted scores ``(C, *patch)`` and its weights ``(*patch)``."""
        channels, weighted = self.channels, self.weighted
        for pieces in itertools.product(*(self.plan.pieces[d][k] for d, k in enumerate(window))):
            cell = tuple(piece[0] for piece in pieces)
            in_cell = tuple(piece[1] for piece in pieces)
            in_window = tuple(piece[2] for piece in pieces)
            buffer = self.cells.get((item, cell))
            if buffer is None:
                buffer = self._allocate(item, cell)
            buffer[(slice(0, channels), *in_cell)].add_(scores[(slice(None), *in_window)])
            if weighted:
                buffer[(channels, *in_cell)].add_(weight[in_window])
        self._complete(item, window)

    def skip(self, item: int, window: Sequence[int]):
        """A window that was not predicted (background): it contributes nothing."""
        self._complete(item, window)

    def _allocate(self, item: int, cell: tuple[int, ...]) -> torch.Tensor:
        shape = [hi - lo for lo, hi in (self.plan.interval(d, j) for d, j in enumerate(cell))]
        channels = self.channels + 1 if self.weighted else self.channels
        buffer = torch.zeros((channels, *shape), device=self.device)
        self.cells[(item, cell)] = buffer
        self.live_bytes += buffer.numel() * buffer.element_size()
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        return buffer

    def _complete(self, item: int, window: Sequence[int]):
        for cell in itertools.product(*(self.ending[d][k] for d, k in enumerate(window))):
            self._finish_cell(item, cell)

    def _finish_cell(self, item: int, cell: tuple[int, ...]):
        crop, target = [], []
        for d, j in enumerate(cell):
            lo, hi = self.plan.interval(d, j)
            size = self.out.shape[2 + d]
            start, stop = max(lo - self.padding[d], 0), min(hi - self.padding[d], size)
            if start >= stop:  # entirely in the padding
                self._drop(item, cell)
                return
            crop.append(slice(start + self.padding[d] - lo, stop + self.padding[d] - lo))
            target.append(slice(start, stop))
        buffer = self._drop(item, cell)
        region = self.out[(item, slice(None), *target)]
        if buffer is None:  # every window over this cell was skipped
            region.copy_(self.fill_output.expand_as(region))
            return
        scores = buffer[(slice(0, self.channels), *crop)]
        if self.weighted:
            weight = buffer[(slice(self.channels, None), *crop)]
            unseen = weight == 0  # voxels only skipped windows reached
            if self.divide:
                scores = scores.div_(weight)
            if unseen.any():
                scores = torch.where(unseen, self.fill_scores, scores)
        region.copy_(self.finish(scores))

    def _drop(self, item: int, cell: tuple[int, ...]) -> torch.Tensor | None:
        buffer = self.cells.pop((item, cell), None)
        if buffer is not None:
            self.live_bytes -= buffer.numel() * buffer.element_size()
        return buffer
