"""UNet++: nested skips, deep supervision heads on X(0, 1..depth), exact pruning."""

from __future__ import annotations

import pytest
import torch

from medseg3d.errors import ConfigError
from medseg3d.nn import build_model


@pytest.mark.parametrize("dims", [2, 3])
def test_pruned_level_gives_exactly_that_head_of_the_full_network(dims):
    model = build_model("unetpp", dims, 1, 2, features=4, depth=3, deep_supervision=True).eval()
    x = torch.randn(1, 1, *([16] * dims))
    with torch.no_grad():
        heads = model.forward_heads(x)
        assert len(heads) == 3
        torch.testing.assert_close(model(x), heads[-1], rtol=0, atol=0)
        for level in (1, 2, 3):
            model.prune = level
            torch.testing.assert_close(model(x), heads[level - 1], rtol=0, atol=0)


def test_pruned_model_from_the_registry_loads_full_weights_and_skips_deeper_nodes():
    options = {"features": 4, "depth": 3, "deep_supervision": True}
    full = build_model("unetpp", 2, 1, 2, **options).eval()
    pruned = build_model("unetpp", 2, 1, 2, prune=1, **options).eval()
    pruned.load_state_dict(full.state_dict())
    called = []
    for key, node in pruned.nodes.items():
        node.register_forward_hook(lambda *_, key=key: called.append(key))
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), full.forward_heads(x)[0], rtol=0, atol=0)
    assert called == ["x0_1"]
    pruned.train()  # pruning is for inference: training runs every head
    assert len(pruned(x)) == 3


def test_prune_needs_deep_supervision_and_a_level_in_range():
    with pytest.raises(ConfigError, match="deep_supervision=True"):
        build_model("unetpp", 2, 1, 2, features=4, depth=3, prune=2)
    with pytest.raises(ConfigError, match="prune must be a level 1..depth=3"):
        build_model("unetpp", 2, 1, 2, features=4, depth=3, deep_supervision=True, prune=4)


def test_node_widths_follow_the_nested_dense_pattern():
    model = build_model("unetpp", 2, 1, 2, features=4, depth=2)
    assert sorted(model.nodes) == ["x0_1", "x0_2", "x1_1"]
    # X(0, 2) sees X(0, 0), X(0, 1) and up(X(1, 1)): 3 * 4 channels
    assert model.nodes["x0_2"].conv1.conv.in_channels == 12
    assert list(model.heads) == ["x0_2"]
