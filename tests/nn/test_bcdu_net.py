"""BCDU-Net: dense bottleneck wiring, the [skip, up] bidirectional ConvLSTM skip, a counted size."""

from __future__ import annotations

import pytest
import torch

from medseg3d.errors import ConfigError
from medseg3d.nn import BCDUNet, build_model
from medseg3d.nn.blocks import ConvLSTM, DoubleConv
from medseg3d.nn.models import DenselyConnectedConvs


def test_dense_bottleneck_feeds_each_block_all_previous_outputs():
    dense = DenselyConnectedConvs(2, 3, 4, num_blocks=3, norm=None, act="relu")
    assert [block.conv1.conv.in_channels for block in dense.blocks] == [3, 4, 8]
    x = torch.randn(1, 3, 8, 8)
    first = dense.blocks[0](x)
    second = dense.blocks[1](first)
    third = dense.blocks[2](torch.cat([second, first], dim=1))  # the paper's cat[D2, D1]
    torch.testing.assert_close(dense(x), third)
    single = DenselyConnectedConvs(2, 3, 4, num_blocks=1)
    assert len(single.blocks) == 1 and isinstance(single.blocks[0], DoubleConv)
    with pytest.raises(ConfigError, match="dense_blocks must be an integer >= 1"):
        DenselyConnectedConvs(2, 3, 4, num_blocks=0)


@pytest.mark.parametrize("dims", [2, 3])
def test_forward_is_encoder_then_bidirectional_convlstm_skips(dims):
    torch.manual_seed(0)
    model = build_model("bcdu_net", dims, 1, 2, features=4, depth=2, norm="batch").eval()
    assert isinstance(model, BCDUNet) and len(model.decoder) == 2
    x = torch.randn(1, 1, *([8] * dims))
    with torch.no_grad():
        skips = model.encoder(x)
        decoded = skips[-1]
        for level in (1, 0):
            stage = model.decoder[level]
            up = stage.up(decoded)
            lstm = stage.lstm
            assert (lstm.bidirectional, lstm.hidden_channels) == (True, model.features[level] // 2)
            # forward direction reads skip then up, backward up then skip; final states concatenated
            forward_state = lstm.forward_cell(skips[level])
            forward_final = lstm.forward_cell(up, forward_state)[0]
            backward_state = lstm.backward_cell(up)
            backward_final = lstm.backward_cell(skips[level], backward_state)[0]
            decoded = stage.conv(torch.cat([forward_final, backward_final], dim=1))
        expected = model.heads[0](decoded)
        torch.testing.assert_close(model(x), expected)


def test_parameter_count_matches_a_layer_by_layer_count():
    model = build_model("bcdu_net", 2, 1, 2, features=[2, 4], depth=1, norm=None, dense_blocks=2)
    encoder = (2 * 1 * 9 + 2) + (2 * 2 * 9 + 2)  # DoubleConv(1, 2)
    dense = (4 * 2 * 9 + 4) + (4 * 4 * 9 + 4) + 2 * (4 * 4 * 9 + 4)  # DoubleConv(2,4), (4,4)
    up = 4 * 2 * 2 * 2 + 2  # 2x2 transposed conv 4 -> 2
    lstm = 2 * (4 * 1 * (2 + 1) * 9 + 4 * 1)  # two cells: conv(2 + 1 hidden -> 4 gates x 1)
    fuse = 2 * (2 * 2 * 9 + 2)  # DoubleConv(2 directions x 1, 2)
    head = 2 * 2 + 2
    assert model.num_parameters() == encoder + dense + up + lstm + fuse + head == 918


def test_forget_gate_biases_survive_the_weight_initialisation():
    model = build_model("bcdu_net", 2, 1, 2, features=4, depth=2)
    for module in model.modules():
        if isinstance(module, ConvLSTM):
            for cell in (module.forward_cell, module.backward_cell):
                hidden = cell.hidden_channels
                assert torch.all(cell.gates.bias[hidden : 2 * hidden] == 1)
                assert torch.all(cell.gates.bias[:hidden] == 0)


def test_own_options_and_interpolation_upsampling():
    model = build_model(
        "bcdu_net", 2, 1, 3, features=4, depth=2, lstm_features=3, dense_blocks=1, upsample="interp"
    )
    assert [stage.lstm.out_channels for stage in model.decoder] == [6, 6]
    assert len(model.encoder.stages[-1].blocks) == 1 and model.dense_blocks == 1
    assert model(torch.randn(1, 1, 16, 12)).shape == (1, 3, 16, 12)
    with pytest.raises(ConfigError, match="lstm_features must be a positive integer"):
        build_model("bcdu_net", 2, 1, 2, lstm_features=0)
    with pytest.raises(ConfigError, match="dense_blocks"):
        build_model("bcdu_net", 2, 1, 2, dense_blocks="3")
    with pytest.raises(ConfigError, match="padding='same'"):
        build_model("bcdu_net", 3, 1, 2, padding="valid")


def test_a_few_steps_fit_a_toy_mask():
    torch.manual_seed(0)
    model = build_model("bcdu_net", 2, 1, 2, features=4, depth=2, norm="batch")
    image = torch.randn(4, 1, 16, 16)
    target = (image[:, 0] > 0.5).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(image), target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_mixed_precision_forward_and_backward():
    model = build_model("bcdu_net", 2, 1, 2, features=4, depth=2, deep_supervision=True)
    x = torch.randn(2, 1, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(x)
    assert [o.dtype for o in outputs] == [torch.bfloat16] * 2
    sum(o.float().sum() for o in outputs).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
