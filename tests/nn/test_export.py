"""``torch.export`` with dynamic spatial sizes: the size check stays symbolic, not a constant."""

from __future__ import annotations

import pytest
import torch

from medseg3d.errors import ShapeError
from medseg3d.nn import build_model


@pytest.mark.parametrize("name", ["unet", "attention_unet", "unetpp"])
def test_export_with_a_dynamic_spatial_size_matches_eager_at_two_sizes(name):
    model = build_model(name, 3, 1, 2, depth=2, features=4).eval()
    steps = torch.export.Dim("steps", min=2, max=16)
    program = torch.export.export(
        model, (torch.randn(1, 1, 8, 12, 8),), dynamic_shapes=({2: 4 * steps},)
    )
    for size in (8, 20):  # multiples of 2**depth = 4
        x = torch.randn(1, 1, size, 12, 8)
        with torch.no_grad():
            expected = model(x)
        torch.testing.assert_close(program.module()(x), expected)
        assert expected.shape == (1, 2, size, 12, 8)


def test_the_size_rule_travels_with_the_export_and_eager_calls_keep_the_shape_error():
    model = build_model("unet", 2, 1, 2, depth=2, features=4).eval()
    any_size = torch.export.Dim("size", min=8, max=64)
    with pytest.raises(torch._dynamo.exc.UserError, match=r"size = 4\*_size"):
        torch.export.export(model, (torch.randn(1, 1, 8, 8),), dynamic_shapes=({2: any_size},))
    steps = torch.export.Dim("steps", min=2, max=16)
    program = torch.export.export(
        model, (torch.randn(1, 1, 8, 8),), dynamic_shapes=({2: 4 * steps},)
    ).module()
    assert program(torch.randn(1, 1, 12, 8)).shape == (1, 2, 12, 8)
    with pytest.raises(AssertionError, match="% 4 == 0"):  # 14 is not a multiple of 2**depth
        program(torch.randn(1, 1, 14, 8))
    with pytest.raises(ShapeError, match="nearest valid sizes: 12 or 16"):
        model(torch.randn(1, 1, 14, 8))
