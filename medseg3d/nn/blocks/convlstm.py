"""Convolutional LSTM (Shi et al. 2015), uni- or bidirectional, 2D and 3D from the layer factory.

A :class:`ConvLSTMCell` is an LSTM whose matrix products are convolutions: the four gates come from
one ``layers.conv(spatial_dims, in + hidden, 4 * hidden, kernel_size)`` over ``cat[x, h]``, in
PyTorch's gate order (input, forget, cell, output)::

    i, f, g, o = split(conv(cat[x_t, h_{t-1}]))
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

With ``kernel_size=1`` it is exactly ``torch.nn.LSTMCell`` applied at every voxel (tested).
:class:`ConvLSTM` reads a sequence forwards, or both ways with two cells (``bidirectional``), as
BCDU-Net (Azad et al. 2019) does with the encoder and decoder maps of a U-Net level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medseg3d.errors import ConfigError, ShapeError
from medseg3d.nn import layers

State = tuple[torch.Tensor, torch.Tensor]  # (h, c), each (B, hidden_channels, *S)
MERGES = ("concat", "sum")


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: ``x (B, in_channels, *S)``, state ``(h, c)`` -> new ``(h, c)``.

    ``h`` and ``c`` are ``(B, hidden_channels, *S)``; ``state=None`` starts from zeros (the first
    step then convolves ``x`` with the input half of the gate kernel only, which is the same and
    cheaper). Same padding: ``S`` is kept. The forget-gate bias starts at 1 (Jozefowicz et al.
    2015, Keras' ``unit_forget_bias``); call :meth:`reset_forget_bias` after a re-initialisation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        *,
        forget_bias: float = 1.0,
    ):
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("hidden_channels", hidden_channels),
            ("kernel_size", kernel_size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ConvLSTM {name} must be a positive integer, got {value!r}")
        if kernel_size % 2 == 0:
            raise ConfigError(f"ConvLSTM kernel_size must be odd (same padding), got {kernel_size}")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.forget_bias = float(forget_bias)
        self.gates = layers.conv(
            spatial_dims, in_channels + hidden_channels, 4 * hidden_channels, kernel_size
        )
        self.reset_forget_bias()

    def reset_forget_bias(self) -> None:
        """Set the forget gate's bias to ``forget_bias`` (the other gate biases are left alone)."""
        hidden = self.hidden_channels
        with torch.no_grad():
            self.gates.bias[hidden : 2 * hidden].fill_(self.forget_bias)

    def forward(self, x: torch.Tensor, state: State | None = None) -> State:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"ConvLSTMCell expects (B, {self.in_channels}, *spatial) with "
                f"{self.spatial_dims} spatial dims, got {tuple(x.shape)}"
            )
        if state is None:  # h = 0: only the input half of the kernel contributes
            weight = self.gates.weight[:, : self.in_channels]
            bias = self.gates.bias.view(1, -1, *([1] * self.spatial_dims))
            gates = layers.conv_nd(x, weight, padding=self.gates.padding)
            gates = gates + bias.to(gates.dtype)  # keeps the autocast dtype of the conv
            cell = None
        else:
            hidden, cell = state
            gates = self.gates(torch.cat([x, hidden], dim=1))
        in_gate, forget_gate, candidate, out_gate = gates.chunk(4, dim=1)
        cell_new = torch.sigmoid(in_gate) * torch.tanh(candidate)
        if cell is not None:
            cell_new = cell_new + torch.sigmoid(forget_gate) * cell
        return torch.sigmoid(out_gate) * torch.tanh(cell_new), cell_new


class ConvLSTM(nn.Module):
    """A ConvLSTM over a sequence of maps; ``bidirectional`` adds a second cell reading backwards.

    Input: a tensor ``(B, T, in_channels, *S)`` (batch first) or a sequence of ``T`` tensors
    ``(B, in_channels, *S)``. Output with ``return_sequence=False``: the final hidden state,
    ``(B, hidden_channels, *S)`` (forwards); bidirectional, the final states of both directions
    (the forward cell after ``x_T``, the backward cell after ``x_1``) merged by ``"concat"`` to
    ``(B, 2 * hidden_channels, *S)`` or by ``"sum"`` to ``(B, hidden_channels, *S)``. With
    ``return_sequence=True``: every step's hidden state ``(B, T, C_out, *S)``, the backward one
    aligned with the step it has just read (as ``torch.nn.LSTM``'s ``output``).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int = 3,
        *,
        bidirectional: bool = False,
        merge: str = "concat",
        return_sequence: bool = False,
    ):
        super().__init__()
        if merge not in MERGES:
            raise ConfigError(f"unknown ConvLSTM merge {merge!r}; choose one of: concat, sum")
        self.forward_cell = ConvLSTMCell(spatial_dims, in_channels, hidden_channels, kernel_size)
        self.backward_cell = (
            ConvLSTMCell(spatial_dims, in_channels, hidden_channels, kernel_size)
            if bidirectional
            else None
        )
        self.bidirectional = bidirectional
        self.merge = merge
        self.return_sequence = return_sequence
        self.hidden_channels = hidden_channels
        self.out_channels = hidden_channels * (2 if bidirectional and merge == "concat" else 1)

    def reset_forget_bias(self) -> None:
        for cell in (self.forward_cell, self.backward_cell):
            if cell is not None:
                cell.reset_forget_bias()

    def forward(self, sequence: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        steps = _steps(sequence)
        forwards = _run(self.forward_cell, steps)
        if self.backward_cell is None:
            return torch.stack(forwards, dim=1) if self.return_sequence else forwards[-1]
        backwards = _run(self.backward_cell, steps[::-1])[::-1]  # backwards[t]: after x_T..x_t
        if not self.return_sequence:
            return self._merge(forwards[-1], backwards[0])
        merged = [self._merge(f, b) for f, b in zip(forwards, backwards)]
        return torch.stack(merged, dim=1)

    def _merge(self, forwards: torch.Tensor, backwards: torch.Tensor) -> torch.Tensor:
        if self.merge == "sum":
            return forwards + backwards
        return torch.cat([forwards, backwards], dim=1)


def _steps(sequence: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(sequence, torch.Tensor):
        if sequence.dim() < 4:
            raise ShapeError(
                f"ConvLSTM expects a sequence (B, T, C, *spatial), got {tuple(sequence.shape)}"
            )
        steps = list(sequence.unbind(dim=1))
    else:
        steps = list(sequence)
    if not steps:
        raise ShapeError("ConvLSTM got an empty sequence (T = 0)")
    return steps


def _run(cell: ConvLSTMCell, steps: list[torch.Tensor]) -> list[torch.Tensor]:
    """Hidden states after each step, from a zero state."""
    state = None
    hidden = []
    for x in steps:
        state = cell(x, state)
        hidden.append(state[0])
    return hidden
