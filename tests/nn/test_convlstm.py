"""ConvLSTM cell and (bi)directional ConvLSTM against torch.nn.LSTM and hand-written equations."""

from __future__ import annotations

import pytest
import torch

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.nn import layers
from medseg3d.nn.blocks import ConvLSTM, ConvLSTMCell

DIMS = (2, 3)


def reference_step(cell: ConvLSTMCell, x, h, c):
    """The ConvLSTM equations of Shi et al. 2015, written out with one conv per gate."""
    hidden = cell.hidden_channels
    weight, bias = cell.gates.weight, cell.gates.bias
    padding = cell.gates.padding
    inputs = torch.cat([x, h], dim=1)
    shape = (1, -1, *([1] * (x.dim() - 2)))

    def gate(k):
        rows = slice(k * hidden, (k + 1) * hidden)
        return layers.conv_nd(inputs, weight[rows], padding=padding) + bias[rows].view(shape)

    i, f, g, o = torch.sigmoid(gate(0)), torch.sigmoid(gate(1)), torch.tanh(gate(2)), gate(3)
    c = f * c + i * g
    return torch.sigmoid(o) * torch.tanh(c), c


def pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, *S) -> (B * prod(S), T, C): every voxel a batch item of an ordinary LSTM."""
    b, t, c = x.shape[:3]
    return x.reshape(b, t, c, -1).permute(0, 3, 1, 2).reshape(-1, t, c)


def copy_lstm_weights(cell: ConvLSTMCell, lstm: torch.nn.LSTM, suffix: str) -> None:
    """torch.nn.LSTM weights (gate order i, f, g, o, as ours) into a 1x1 ConvLSTM cell."""
    weight = torch.cat(
        [getattr(lstm, f"weight_ih_l0{suffix}"), getattr(lstm, f"weight_hh_l0{suffix}")], dim=1
    )
    bias = getattr(lstm, f"bias_ih_l0{suffix}") + getattr(lstm, f"bias_hh_l0{suffix}")
    with torch.no_grad():
        cell.gates.weight.copy_(weight.view(cell.gates.weight.shape))
        cell.gates.bias.copy_(bias)


@pytest.mark.parametrize("dims", DIMS)
def test_cell_follows_the_convlstm_equations_with_3x3_kernels(dims):
    torch.manual_seed(0)
    cell = ConvLSTMCell(dims, 3, 5, 3)
    assert cell.gates.in_channels == 8 and cell.gates.out_channels == 20
    spatial = (6, 5, 4)[:dims]
    x1, x2 = torch.randn(2, 3, *spatial), torch.randn(2, 3, *spatial)
    zeros = torch.zeros(2, 5, *spatial)
    h1, c1 = cell(x1)
    expected_h1, expected_c1 = reference_step(cell, x1, zeros, zeros)
    torch.testing.assert_close(h1, expected_h1)
    torch.testing.assert_close(c1, expected_c1)
    torch.testing.assert_close(cell(x1, (zeros, zeros))[0], h1)  # None is a zero state
    h2, c2 = cell(x2, (h1, c1))
    expected_h2, expected_c2 = reference_step(cell, x2, expected_h1, expected_c1)
    torch.testing.assert_close(h2, expected_h2)
    torch.testing.assert_close(c2, expected_c2)
    assert h2.shape == c2.shape == (2, 5, *spatial)


def test_forget_gate_bias_starts_at_one():
    cell = ConvLSTMCell(2, 2, 3)
    assert cell.gates.bias[3:6].tolist() == [1.0, 1.0, 1.0]
    torch.nn.init.zeros_(cell.gates.bias)
    cell.reset_forget_bias()
    assert cell.gates.bias.tolist() == [0.0] * 3 + [1.0] * 3 + [0.0] * 6


@pytest.mark.parametrize("dims", DIMS)
def test_1x1_convlstm_is_torch_lstm_at_every_voxel(dims):
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    module = ConvLSTM(dims, 3, 4, kernel_size=1, return_sequence=True)
    copy_lstm_weights(module.forward_cell, lstm, "")
    sequence = torch.randn(2, 3, 3, *(5, 4, 3)[:dims])  # (B, T, C, *S)
    out = module(sequence)
    assert out.shape == (2, 3, 4, *sequence.shape[3:])
    expected, _ = lstm(pixels(sequence))
    torch.testing.assert_close(pixels(out), expected, rtol=1e-5, atol=1e-6)
    module.return_sequence = False
    torch.testing.assert_close(module(sequence), out[:, -1])


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_convlstm_is_bidirectional_torch_lstm(merge):
    torch.manual_seed(2)
    lstm = torch.nn.LSTM(3, 4, batch_first=True, bidirectional=True)
    module = ConvLSTM(2, 3, 4, kernel_size=1, bidirectional=True, merge=merge)
    copy_lstm_weights(module.forward_cell, lstm, "")
    copy_lstm_weights(module.backward_cell, lstm, "_reverse")
    sequence = torch.randn(2, 2, 3, 5, 4)
    output, (h_n, _) = lstm(pixels(sequence))  # h_n: (2 directions, B * S, hidden)
    final = module(sequence)
    if merge == "concat":
        assert module.out_channels == 8 and final.shape == (2, 8, 5, 4)
        # the final states: forward after x_T, backward after x_1 (= output[:, 0, H:])
        reference = torch.cat([h_n[0], h_n[1]], dim=1)
        torch.testing.assert_close(pixels(final[:, None])[:, 0], reference, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(h_n[1], output[:, 0, 4:])
        module.return_sequence = True
        torch.testing.assert_close(pixels(module(sequence)), output, rtol=1e-5, atol=1e-6)
    else:
        assert module.out_channels == 4
        torch.testing.assert_close(
            pixels(final[:, None])[:, 0], h_n[0] + h_n[1], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("dims", DIMS)
def test_bidirectional_reads_the_sequence_both_ways_with_its_own_weights(dims):
    torch.manual_seed(3)
    module = ConvLSTM(dims, 2, 3, bidirectional=True)
    first, second = torch.randn(1, 2, *([6] * dims)), torch.randn(1, 2, *([6] * dims))
    zeros = torch.zeros(1, 3, *([6] * dims))
    forward_state = reference_step(module.forward_cell, first, zeros, zeros)
    forward_final = reference_step(module.forward_cell, second, *forward_state)[0]
    backward_state = reference_step(module.backward_cell, second, zeros, zeros)
    backward_final = reference_step(module.backward_cell, first, *backward_state)[0]
    expected = torch.cat([forward_final, backward_final], dim=1)
    torch.testing.assert_close(module([first, second]), expected)
    torch.testing.assert_close(module(torch.stack([first, second], dim=1)), expected)
    swapped = module([second, first])  # order matters: not a symmetric function of the pair
    assert not torch.allclose(swapped, expected)
    swapped.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


def test_bad_arguments_and_shapes_are_refused():
    with pytest.raises(ConfigError, match="hidden_channels must be a positive integer"):
        ConvLSTMCell(2, 2, 0)
    with pytest.raises(ConfigError, match="kernel_size must be odd"):
        ConvLSTMCell(2, 2, 3, kernel_size=2)
    with pytest.raises(ConfigError, match="concat, sum"):
        ConvLSTM(2, 2, 3, merge="mean")
    with pytest.raises(ShapeError, match=r"\(B, 2, \*spatial\) with 2 spatial dims"):
        ConvLSTMCell(2, 2, 3)(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ShapeError, match="empty sequence"):
        ConvLSTM(2, 2, 3)([])
    with pytest.raises(ShapeError, match=r"\(B, T, C, \*spatial\)"):
        ConvLSTM(2, 2, 3)(torch.zeros(2, 3, 4))


def test_zero_state_shortcut_equals_the_full_kernel_in_float64_too():
    cell = ConvLSTMCell(3, 2, 2).double()
    x = torch.randn(1, 2, 4, 4, 4, dtype=torch.float64)
    zeros = torch.zeros(1, 2, 4, 4, 4, dtype=torch.float64)
    full = cell.gates(torch.cat([x, zeros], dim=1))
    hidden, cell_state = cell(x)
    i, _, g, o = full.chunk(4, dim=1)
    expected_c = torch.sigmoid(i) * torch.tanh(g)
    torch.testing.assert_close(cell_state, expected_c, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(hidden, torch.sigmoid(o) * torch.tanh(expected_c))
