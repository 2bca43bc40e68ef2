"""The 2015 U-Net (Ronneberger et al.) reproduced exactly: parameter count and 572 -> 388."""

from __future__ import annotations

import torch

from medseg3d.nn import build_model, valid_output_size

PAPER = {"features": 64, "depth": 4, "norm": None, "upsample": "transpose", "padding": "valid"}


def _hand_count(features: int = 64, depth: int = 4, in_channels: int = 1, classes: int = 2) -> int:
    """Parameters of the paper's network, counted layer by layer (bias on every conv)."""
    widths = [features * 2**level for level in range(depth + 1)]

    def conv(cin, cout, k):
        return cin * cout * k * k + cout

    total, previous = 0, in_channels
    for width in widths:  # contracting path and bottleneck: two 3x3 convs per level
        total += conv(previous, width, 3) + conv(width, width, 3)
        previous = width
    for level in reversed(range(depth)):  # 2x2 up-conv, then two 3x3 convs on the concatenation
        width = widths[level]
        total += (
            conv(widths[level + 1], width, 2) + conv(2 * width, width, 3) + conv(width, width, 3)
        )
    return total + conv(features, classes, 1)


def test_parameter_count_is_the_published_31_030_658():
    with torch.device("meta"):  # no memory, no time
        model = build_model("unet", 2, 1, 2, **PAPER)
    count = sum(p.numel() for p in model.parameters())
    assert count == 31_030_658 == _hand_count()


def test_maps_572_to_388():
    assert valid_output_size(572, 4) == 388
    assert valid_output_size((572, 572), 4) == (388, 388)
    with torch.device("meta"):
        model = build_model("unet", 2, 1, 2, **PAPER)
        out = model(torch.empty(1, 1, 572, 572))
    assert tuple(out.shape) == (1, 2, 388, 388)
    assert model.output_size((572, 572)) == (388, 388)


def test_same_arithmetic_runs_for_real_at_a_narrow_width():
    model = build_model("unet", 2, 1, 2, **{**PAPER, "features": 2}).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 572, 572))
    assert out.shape == (1, 2, 388, 388) and torch.isfinite(out).all()
