"""Which input sizes a U-Net accepts, and what it returns for them.

With ``padding="same"`` every spatial size must be a multiple of ``2**depth`` (the size divisor)
and the output has the input's size. With ``padding="valid"`` (the 2015 U-Net) every block of
two 3x3 convolutions trims 4 voxels, every pooling needs an even size, and the output is
smaller than the input: 572 -> 388 at depth 4.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from medseg3d.errors import ConfigError, ShapeError

#: Voxels a block of two 3x3 valid convolutions removes from each spatial size.
VALID_SHRINK = 4


def _output_size_1d(size: int, depth: int, padding: str, shrink: int = VALID_SHRINK) -> int | None:
    """The output size along one axis, or None when ``size`` is not a valid input size."""
    if padding == "same":
        divisor = 2**depth
        return size if size >= divisor and size % divisor == 0 else None
    if padding != "valid":
        raise ConfigError(f"unknown padding {padding!r}; choose one of: same, valid")
    for _ in range(depth):  # encoder: block, then 2x pooling of an even size
        size -= shrink
        if size < 2 or size % 2:
            return None
        size //= 2
    size -= shrink  # bottleneck
    if size < 1:
        return None
    for _ in range(depth):  # decoder: 2x up-sampling, then block
        size = 2 * size - shrink
        if size < 1:
            return None
    return size


def is_valid_input_size(
    size: int, depth: int, padding: str = "same", shrink: int = VALID_SHRINK
) -> bool:
    """Whether a network of ``depth`` down-samplings takes ``size`` voxels along an axis."""
    return _output_size_1d(size, depth, padding, shrink) is not None


def nearest_valid_sizes(
    size: int,
    depth: int,
    padding: str = "same",
    shrink: int = VALID_SHRINK,
    *,
    minimum: int = 1,
) -> list[int]:
    """The valid input sizes just below and just above ``size`` (one when ``size`` is below all).

    Sizes below ``minimum`` are never proposed (a network with instance norm needs
    ``2 * 2**depth``, see :meth:`SegmentationNetwork.check_input`).
    """
    if size >= minimum and _output_size_1d(size, depth, padding, shrink) is not None:
        return [size]
    found = []
    below = next(
        (
            s
            for s in range(size - 1, max(minimum, 1) - 1, -1)
            if _output_size_1d(s, depth, padding, shrink)
        ),
        None,
    )
    if below is not None:
        found.append(below)
    above = max(size + 1, minimum)
    while _output_size_1d(above, depth, padding, shrink) is None:
        above += 1
    return [*found, above]


def valid_output_size(
    input_size: int | Sequence[int],
    depth: int = 4,
    *,
    padding: str = "valid",
    shrink: int = VALID_SHRINK,
) -> int | tuple[int, ...]:
    """The spatial size a U-Net of ``depth`` down-samplings returns for ``input_size`` (voxels).

    ``valid_output_size(572, 4) == 388``; ``valid_output_size((572, 572), 4) == (388, 388)``;
    with ``padding="same"`` the size is returned unchanged. Raises :class:`ShapeError` naming the
    nearest valid sizes when the input size is not possible.
    """
    sizes = (input_size,) if isinstance(input_size, int) else tuple(int(s) for s in input_size)
    check_input_size(sizes, depth, padding, shrink=shrink)
    out = tuple(_output_size_1d(s, depth, padding, shrink) for s in sizes)
    return out[0] if isinstance(input_size, int) else out


def valid_input_size(
    min_output_size: int, depth: int = 4, *, padding: str = "valid", shrink: int = VALID_SHRINK
) -> int:
    """The smallest valid input size whose output has at least ``min_output_size`` voxels."""
    size = 1
    while True:
        out = _output_size_1d(size, depth, padding, shrink)
        if out is not None and out >= min_output_size:
            return size
        size += 1


def check_input_size(
    spatial_shape: Sequence[int],
    depth: int,
    padding: str = "same",
    *,
    model: str = "network",
    shrink: int = VALID_SHRINK,
    suggest_at_least: int = 1,
) -> None:
    """Raise :class:`ShapeError` unless every size of ``spatial_shape`` is a valid input size.

    Symbolic sizes (``torch.SymInt``, under ``torch.export`` or ``torch.compile(dynamic=True)``)
    are not turned into constants: the rule becomes a ``torch._check`` on the symbol, so an
    export with a dynamic spatial dim keeps it dynamic (and the exported program checks it).
    Suggested sizes are at least ``suggest_at_least``.
    """
    shape = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in spatial_shape)
    for axis, size in enumerate(shape):
        if isinstance(size, torch.SymInt):
            _check_symbolic_size(size, depth, padding, shrink)
            continue
        if _output_size_1d(size, depth, padding, shrink) is not None:
            continue
        nearest = " or ".join(
            map(str, nearest_valid_sizes(size, depth, padding, shrink, minimum=suggest_at_least))
        )
        if padding == "same":
            rule = f"every size must be a multiple of 2**depth = {2**depth}"
        else:
            rule = "valid padding needs even sizes before every pooling"
        raise ShapeError(
            f"input spatial size {shape} does not fit {model} (depth {depth}, padding "
            f"{padding!r}): size {size} along spatial axis {axis} is not valid ({rule}); "
            f"nearest valid sizes: {nearest}. Pad or crop the input (or its patch size)."
        )


def _check_symbolic_size(size: torch.SymInt, depth: int, padding: str, shrink: int) -> None:
    """The size rule for a symbolic size: valid sizes are ``smallest + k * 2**depth``, k >= 0."""
    smallest = valid_input_size(1, depth, padding=padding, shrink=shrink)
    divisor = 2**depth
    torch._check(size >= smallest, lambda: f"spatial sizes must be at least {smallest}")
    torch._check(
        (size - smallest) % divisor == 0,
        lambda: f"spatial sizes must be {smallest} plus a multiple of 2**depth = {divisor}",
    )
