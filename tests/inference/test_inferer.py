"""SlidingWindowInferer: a MONAI Inferer, usable in a MONAI SupervisedEvaluator."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import Inferer
from torch import nn

from medseg3d.inference import SlidingWindowInferer, WindowStats, sliding_window_inference
from medseg3d.nn import layers


class Net(nn.Module):
    out_channels = 2

    def __init__(self):
        super().__init__()
        self.conv = layers.conv(3, 1, 2, 3)

    def forward(self, x, scale: float = 1.0):
        return self.conv(x) * scale


def test_is_a_monai_inferer_and_equals_the_function():
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(1, 1, 30, 20, 20)
    inferer = SlidingWindowInferer((16, 16, 16), overlap=0.5, batch_size=8)
    assert isinstance(inferer, Inferer)
    torch.testing.assert_close(inferer(x, net), sliding_window_inference(x, net, 16, batch_size=8))
    assert isinstance(inferer.last_stats, WindowStats) and inferer.last_stats.windows == 12
    # extra arguments go to the network
    torch.testing.assert_close(inferer(x, net, scale=2.0), 2 * inferer(x, net), atol=1e-5, rtol=0)
    assert "patch_size=(16, 16, 16)" in repr(inferer)


def test_label_output_and_skip_mask_per_call():
    net = Net().eval()
    x = torch.randn(1, 1, 24, 16, 16)
    mask = torch.zeros(24, 16, 16, dtype=torch.bool)
    inferer = SlidingWindowInferer(16, output="labels", batch_size=8)
    labels = inferer(x, net, skip_mask=mask)
    assert labels.dtype == torch.uint8 and labels.shape == (1, 1, 24, 16, 16)
    assert inferer.last_stats.skipped == inferer.last_stats.windows and not labels.any()


def test_unknown_option_is_refused():
    with pytest.raises(TypeError, match="roi_size"):
        SlidingWindowInferer(16, roi_size=16)


def test_in_a_monai_supervised_evaluator():
    from monai.engines import SupervisedEvaluator
    from monai.handlers import MeanDice
    from monai.transforms import AsDiscreted

    torch.manual_seed(0)
    data = [
        {"image": torch.randn(1, 1, 20, 18, 16), "label": torch.randint(0, 2, (1, 1, 20, 18, 16))}
        for _ in range(2)
    ]
    net = Net().eval()
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=data,
        network=net,
        inferer=SlidingWindowInferer(16, batch_size=8),
        postprocessing=AsDiscreted(keys=["pred", "label"], argmax=(True, False), to_onehot=2),
        key_val_metric={
            "dice": MeanDice(
                output_transform=lambda out: (out[0]["pred"][None], out[0]["label"][None])
            )
        },
    )
    evaluator.run()
    assert 0.0 <= evaluator.state.metrics["dice"] <= 1.0
    assert evaluator.state.output[0]["pred"].shape == (2, 20, 18, 16)
