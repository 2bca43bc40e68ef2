"""``sliding_window_inference``: devices, batching, mirroring, skipping and progress around the
numerical core (:mod:`.windows`) and the cell stitcher (:mod:`.stitching`).

Peak memory (bytes) on the stitching ``device``, for ``B`` images of ``N`` voxels, ``C``
classes, patch ``P``, stream axis ``a`` (see :func:`.windows.stream_order`; size ``S_a``, step
``t_a``) and second axis ``b``::

    input           4*B*C_in*N  (+ a padded copy only if an axis is smaller than the patch)
    + output        4*B*C*N (logits), 4|2*B*C*N (probabilities float32|16), B*N (uint8 labels)
    + live cells    4*C' * [(P_a - t_a)*N/S_a + P_a*P_b*N/(S_a*S_b)]
                    (C' = C in label mode without skipped windows, else C + 1 for the weights)
    + window batch  4*batch_size*(C_in + 2*C)*prod(P)   (+ the network's activations)

MONAI's ``sliding_window_inference`` holds ``4*B*C*N + 4*N`` bytes for output and count map at
any output mode; in label mode ours replaces that with ``B*N`` bytes plus the band of cells.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.inference.arguments import (
    as_device,
    check_dtype,
    check_finite,
    check_options,
    check_padding,
    check_size_divisor,
)
from medseg3d.inference.batching import Progress, Transfer, gather, pick_compute_device
from medseg3d.inference.stitching import FILL_LOGIT, CellStitcher, is_scale_free, make_finisher
from medseg3d.inference.windows import (
    CellPlan,
    importance_map,
    padding_for,
    resolve_patch_size,
    stream_order,
    window_grid,
)

logger = logging.getLogger(__name__)

Predictor = Callable[[torch.Tensor], "torch.Tensor | Sequence[torch.Tensor]"]


@dataclass
class WindowStats:
    """What a run did: windows in total (all batch items), predicted, skipped as background,
    predictor calls (mirrors included) and the peak bytes held in cell buffers."""

    windows: int = 0
    predicted: int = 0
    skipped: int = 0
    predictor_calls: int = 0
    peak_buffer_bytes: int = 0


def sliding_window_inference(
    inputs: torch.Tensor,
    predictor: Predictor,
    patch_size: int | Sequence[int],
    *,
    overlap: float | Sequence[float] = 0.5,
    mode: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    batch_size: int = 4,
    output: str = "logits",
    activation: str = "softmax",
    average: str = "logits",
    dtype: torch.dtype | None = None,
    mirror_axes: Sequence[int] | None = None,
    skip_below: float | None = None,
    skip_mask: torch.Tensor | None = None,
    background: int = 0,
    out_channels: int | None = None,
    padding_mode: str = "constant",
    cval: float = 0.0,
    compute_device: torch.device | str | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    stitch_threads: int | None = 1,
    return_stats: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, WindowStats]:
    """Predict ``inputs`` ``(B, C_in, *spatial)`` (2D or 3D) window by window, in bounded memory.

    Args:
        predictor: maps ``(N, C_in, *patch)`` to ``(N, C, *patch)`` logits, or a deep-supervision
            list whose first entry is the full-resolution output.
        patch_size: window size in voxels per axis (one int for all); ``None``/<=0 = whole axis.
            May exceed the training patch for fully convolutional networks (fewer overlaps).
        overlap: fraction of a window shared with its neighbour, per axis or one value, in [0, 1).
        mode: ``"gaussian"`` (sigma = ``sigma_scale`` x patch) or ``"constant"`` blending.
        batch_size: windows per predictor call.
        output: ``"logits"`` (float32), ``"probabilities"`` (``dtype`` float32 or float16) or
            ``"labels"`` (``(B, 1, *spatial)`` uint8 argmax, int16 above 256 classes; with
            ``activation="sigmoid"``, ``(B, C, *spatial)`` uint8 of ``p > 0.5``).
        activation: ``"softmax"`` over channels or ``"sigmoid"`` per channel.
        average: what windows and mirrors average: ``"logits"`` or ``"probabilities"``.
        mirror_axes: spatial axes (0 = first spatial axis) for mirror test-time augmentation;
            all ``2**len(mirror_axes)`` flip combinations are averaged.
        skip_below: skip windows whose input (all channels) is below this intensity, e.g. air.
        skip_mask: ``(B|1, 1, *spatial)`` or ``(*spatial)``; skip windows with no nonzero voxel.
            Voxels covered only by skipped windows get class ``background`` (logits: 0 for it,
            -1e4 for the others; sigmoid: all -1e4).
        out_channels: number of classes, only needed when every window may be skipped.
        padding_mode, cval: how axes smaller than the patch are padded (cropped back after).
        compute_device: where windows go for the predictor (default: the network's device, or
            the input's); device: where results are stitched and returned (default: the input's).
            Predictions move between them with non-blocking copies, overlapped with the next batch.
        progress: show a tqdm progress bar over windows (on stderr).
        stitch_threads: intra-op CPU threads while stitching (accumulating and finishing
            cells; memory-bound ops), ``None`` = ``torch.get_num_threads()``. The default 1 avoids
            a thread hand-off per op, which costs milliseconds each on a busy CPU (2.7x less CPU
            time on a loaded 2-core machine); the predictor always runs with the caller's
            ``torch.set_num_threads`` setting, which is restored after stitching.
        return_stats: also return a :class:`WindowStats`.

    Returns:
        The output on ``device`` (a MONAI ``MetaTensor`` with the input's metadata if the input
        was one), and the :class:`WindowStats` if ``return_stats``.

    Peak memory is the input, the output (``B*N`` bytes in label mode), a band of live cells
    ``4*C'*[(P_a - t_a)*N/S_a + P_a*P_b*N/(S_a*S_b)]`` bytes (stream axis ``a``, next axis
    ``b``, step ``t``) and one window batch; never the class scores of the whole volume. See the
    module docstring and docs/inference.md.
    """
    inputs, meta = _strip_meta(inputs)
    check_options(inputs, batch_size, output, activation, average, background, padding_mode)
    check_finite(inputs)
    if stitch_threads is not None and int(stitch_threads) < 1:
        raise ConfigError(f"stitch_threads must be at least 1 (or None), got {stitch_threads!r}")
    spatial_dims = inputs.dim() - 2
    image_size = tuple(inputs.shape[2:])
    patch = resolve_patch_size(patch_size, image_size)
    check_size_divisor(predictor, patch)
    device = as_device(device) if device is not None else inputs.device
    compute_device = pick_compute_device(compute_device, predictor, inputs)
    padding = padding_for(image_size, patch)
    check_padding(image_size, patch, padding, padding_mode)
    padded = _pad(inputs, padding, padding_mode, cval)
    padded_size = tuple(padded.shape[2:])
    starts = window_grid(padded_size, patch, overlap)
    axes = stream_order(padded_size, patch, starts)  # slowest first
    plan = CellPlan.build(starts, patch, split_axes=axes[:2])
    windows = [
        tuple(index[axes.index(d)] for d in range(spatial_dims))
        for index in itertools.product(*(range(len(starts[a])) for a in axes))
    ]
    order = [(item, window) for item in range(inputs.shape[0]) for window in windows]

    skipped = _background_windows(inputs, order, starts, patch, padding, skip_below, skip_mask)
    channels = out_channels or getattr(predictor, "out_channels", None)
    if len(skipped) == len(order) and channels is None:
        logger.info("every window is background; one probe call tells the number of classes")
        with torch.no_grad():
            probe = gather(padded, order[:1], starts, patch, compute_device)
            channels = _call(predictor, probe, WindowStats(), None)[0].shape[1]
    todo = [key for key in order if key not in skipped]
    stats = WindowStats(windows=len(order), predicted=len(todo), skipped=len(skipped))

    weights = importance_map(patch, mode, sigma_scale, device)
    weights_compute = weights.to(compute_device)
    if isinstance(mirror_axes, int):  # mirror_axes=0: the first axis, not "no mirroring"
        mirror_axes = (mirror_axes,)
    flips = [
        tuple(axis + 2 for axis in flipped)
        for count in range(1, len(mirror_axes or ()) + 1)
        for flipped in itertools.combinations(sorted(set(mirror_axes)), count)
    ]
    if any(not 0 <= dim - 2 < spatial_dims for dims in flips for dim in dims):
        raise ConfigError(
            f"mirror_axes must be spatial axes 0..{spatial_dims - 1}, got {mirror_axes}"
        )
    window_activation = activation if average == "probabilities" else None

    def predict(batch: torch.Tensor) -> torch.Tensor:
        # the predictor's output may be a buffer it reuses (CUDA graphs, TensorRT) or a view of
        # its input: unless _call made a new tensor, it is read, never written
        scores, owned = _call(predictor, batch, stats, window_activation)
        if not flips:
            return scores.mul_(weights_compute) if owned else scores * weights_compute
        total = scores if owned else scores.clone()
        for dims in flips:
            mirrored, _ = _call(predictor, torch.flip(batch, dims), stats, window_activation)
            total += torch.flip(mirrored, dims)
        total /= len(flips) + 1
        return total.mul_(weights_compute)

    stitcher: CellStitcher | None = None

    def make_stitcher(classes: int) -> CellStitcher:
        if activation == "softmax" and background >= classes:
            raise ConfigError(f"background class {background} does not exist ({classes} classes)")
        out = _allocate_output(inputs, classes, output, activation, dtype, device)
        fill = torch.full((classes,), FILL_LOGIT)
        if activation == "softmax":
            fill[background] = 0.0
        if window_activation is not None:  # the stitched scores are probabilities already
            fill = torch.softmax(fill, 0) if activation == "softmax" else torch.sigmoid(fill)
        activated = window_activation is not None
        scale_free = is_scale_free(output, activation, activated=activated)
        finish = make_finisher(output, activation, activated=activated, scale_free=scale_free)
        return CellStitcher(
            plan,
            padding,
            out,
            finish,
            fill,
            device,
            divide=not scale_free,
            track_unseen=bool(skipped),
        )

    if channels is not None:
        stitcher = make_stitcher(int(channels))
    cursor = 0

    def consume(keys: list[tuple[int, tuple]], transfer: Transfer):
        with _threads(stitch_threads):
            _consume(keys, transfer)

    def _consume(keys: list[tuple[int, tuple]], transfer: Transfer):
        nonlocal cursor, stitcher
        scores = transfer.wait()
        if stitcher is None:
            stitcher = make_stitcher(scores.shape[1])
        if scores.shape[1] != stitcher.channels:
            raise ShapeError(
                f"the predictor returned {scores.shape[1]} channels, expected {stitcher.channels} "
                "(out_channels); pass the network's number of classes"
            )
        for key, window_scores in zip(keys, scores):
            while order[cursor] != key:  # background windows before this one
                stitcher.skip(*order[cursor])
                cursor += 1
            stitcher.add(*key, window_scores, weights)
            cursor += 1

    with torch.no_grad(), Progress(len(todo), progress) as bar:
        pending = None
        for first in range(0, len(todo), batch_size):
            keys = todo[first : first + batch_size]
            batch = gather(padded, keys, starts, patch, compute_device)
            transfer = Transfer(predict(batch), device)
            if pending is not None:
                consume(*pending)
                pending = None
            if transfer.event is None:  # synchronous: stitch now, hold one batch at a time
                consume(keys, transfer)
            else:  # stitch this batch while the device computes the next one
                pending = (keys, transfer)
            bar.update(len(keys))
        if pending is not None:
            consume(*pending)
        with _threads(stitch_threads):
            for key in order[cursor:]:
                stitcher.skip(*key)
    stats.peak_buffer_bytes = stitcher.peak_bytes
    if stats.skipped:
        logger.info("skipped %d of %d windows as background", stats.skipped, stats.windows)
    result = _restore_meta(stitcher.out, meta)
    return (result, stats) if return_stats else result


@contextlib.contextmanager
def _threads(count: int | None):
    """Run the block with ``count`` intra-op CPU threads (``None``: unchanged), then restore."""
    previous = torch.get_num_threads()
    if count is None or int(count) == previous:
        yield
        return
    torch.set_num_threads(int(count))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _call(
    predictor, batch, stats: WindowStats, activation: str | None
) -> tuple[torch.Tensor, bool]:
    """The predictor's float32 scores for ``batch`` (activated when asked), and whether that
    tensor was made here (so it may be written in place) rather than handed out by the predictor."""
    result = predictor(batch)
    stats.predictor_calls += 1
    if isinstance(result, (list, tuple)):
        result = result[0]  # deep supervision: the full-resolution output comes first
    if not isinstance(result, torch.Tensor):
        raise ConfigError(
            f"the predictor must return a tensor or a list of tensors, got {type(result).__name__}"
        )
    if (
        result.dim() != batch.dim()
        or result.shape[0] != batch.shape[0]
        or result.shape[2:] != batch.shape[2:]
    ):
        raise ShapeError(
            f"the predictor returned shape {tuple(result.shape)} for windows {tuple(batch.shape)}; "
            "it must keep the spatial size (use padding='same' networks)"
        )
    if activation == "softmax":
        return torch.softmax(result.float(), dim=1), True
    if activation == "sigmoid":
        return torch.sigmoid(result.float()), True
    converted = result.float()
    return converted, converted is not result


def _background_windows(inputs, order, starts, patch, padding, skip_below, skip_mask) -> set:
    if skip_below is None and skip_mask is None:
        return set()
    if skip_mask is not None:
        skip_mask = torch.as_tensor(skip_mask)
        given = tuple(skip_mask.shape)
        while skip_mask.dim() < inputs.dim():
            skip_mask = skip_mask[None]
        if skip_mask.shape[2:] != inputs.shape[2:] or skip_mask.shape[0] not in (
            1,
            inputs.shape[0],
        ):
            raise ShapeError(
                f"skip_mask has shape {given} for inputs {tuple(inputs.shape)}; "
                "give (B or 1, 1, *spatial) or (*spatial)"
            )
    skipped = set()
    for item, window in order:
        region = tuple(
            slice(max(starts[d][k] - padding[d][0], 0), starts[d][k] - padding[d][0] + patch[d])
            for d, k in enumerate(window)
        )
        if skip_below is not None and inputs[(item, slice(None), *region)].amax() < skip_below:
            skipped.add((item, window))
        elif skip_mask is not None:
            mask_item = item if skip_mask.shape[0] > 1 else 0
            if not skip_mask[(mask_item, slice(None), *region)].any():
                skipped.add((item, window))
    return skipped


def _allocate_output(inputs, classes, output, activation, dtype, device) -> torch.Tensor:
    batch, spatial = inputs.shape[0], tuple(inputs.shape[2:])
    check_dtype(dtype, output, classes, activation)
    if output == "labels":
        if activation == "sigmoid":
            return torch.empty(
                (batch, classes, *spatial), dtype=dtype or torch.uint8, device=device
            )
        label_dtype = dtype or (torch.uint8 if classes <= 256 else torch.int16)
        return torch.empty((batch, 1, *spatial), dtype=label_dtype, device=device)
    return torch.empty((batch, classes, *spatial), dtype=dtype or torch.float32, device=device)


def _pad(inputs, padding, padding_mode, cval) -> torch.Tensor:
    if not any(before or after for before, after in padding):
        return inputs
    flat = [amount for pair in reversed(padding) for amount in pair]  # F.pad: last axis first
    if padding_mode == "constant":
        return F.pad(inputs, flat, mode="constant", value=cval)
    return F.pad(inputs, flat, mode=padding_mode)


def _strip_meta(inputs):
    meta_tensor = getattr(sys.modules.get("monai.data.meta_tensor"), "MetaTensor", None)
    if meta_tensor is not None and isinstance(inputs, meta_tensor):
        return inputs.as_tensor(), inputs
    return inputs, None


def _restore_meta(result: torch.Tensor, meta):
    if meta is None:
        return result
    wrapped = type(meta)(result)
    wrapped.copy_meta_from(meta, copy_attr=False)
    return wrapped
