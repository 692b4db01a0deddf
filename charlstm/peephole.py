"""The peephole LSTM (Gers & Schmidhuber, 2000): the gates also see the cell state.

    i = sigmoid(W_ii x + W_hi h + b_i + p_i * c_prev)
    f = sigmoid(W_if x + W_hf h + b_f + p_f * c_prev)
    g = tanh(W_ig x + W_hg h + b_g)
    c = f * c_prev + i * g
    o = sigmoid(W_io x + W_ho h + b_o + p_o * c)
    h = o * tanh(c)

No fused kernel implements it, so the loop over time runs in TorchScript; the input
projections of all time steps are one matrix product before the loop. The module takes
and returns what nn.LSTM(batch_first=True) does, and its parameters carry nn.LSTM's
names (weight_ih_l0, ...) plus peephole_i_l0, peephole_f_l0 and peephole_o_l0.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn


def peephole_cell(
    x_gates: torch.Tensor,  # (batch, 4 * hidden): this step's input projection and biases
    h: torch.Tensor,
    c: torch.Tensor,
    weight_hh: torch.Tensor,
    peephole_i: torch.Tensor,
    peephole_f: torch.Tensor,
    peephole_o: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of the equations above: (i, f, g, o, c, h). With zero peepholes it is
    nn.LSTM's step, which is how `charlstm inspect` reads any LSTM's gates."""
    gates = x_gates + torch.mm(h, weight_hh.t())
    i, f, g, o = gates.chunk(4, 1)
    i = torch.sigmoid(i + peephole_i * c)
    f = torch.sigmoid(f + peephole_f * c)
    g = torch.tanh(g)
    c = f * c + i * g
    o = torch.sigmoid(o + peephole_o * c)
    h = o * torch.tanh(c)
    return i, f, g, o, c, h


def _peephole_steps(
    x_gates: torch.Tensor,  # (time, batch, 4 * hidden): input projection and both biases
    h: torch.Tensor,
    c: torch.Tensor,
    weight_hh: torch.Tensor,
    peephole_i: torch.Tensor,
    peephole_f: torch.Tensor,
    peephole_o: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    outputs: list[torch.Tensor] = []
    for t in range(x_gates.size(0)):
        _, _, _, _, c, h = peephole_cell(
            x_gates[t], h, c, weight_hh, peephole_i, peephole_f, peephole_o
        )
        outputs.append(h)
    return torch.stack(outputs), h, c


def _compile_steps():
    """TorchScript runs the loop without the Python interpreter. PyTorch marks it
    deprecated (a FutureWarning) but it is the one compiler that handles a loop whose
    length changes from call to call; where it is gone, the same function runs eagerly."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.script(_peephole_steps)
    except Exception:  # noqa: BLE001 - any failure to compile leaves the eager function
        return _peephole_steps


peephole_steps = _compile_steps()


class PeepholeLSTM(nn.Module):
    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        dropout: float = 0.0,
        batch_first: bool = True,
    ):
        super().__init__()
        if not batch_first:
            raise ValueError("PeepholeLSTM takes batch-first input only")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        for layer in range(num_layers):
            inputs = input_size if layer == 0 else hidden_size
            self.register_parameter(
                f"weight_ih_l{layer}", nn.Parameter(torch.empty(4 * hidden_size, inputs))
            )
            self.register_parameter(
                f"weight_hh_l{layer}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
            )
            for name in ("bias_ih", "bias_hh"):
                self.register_parameter(
                    f"{name}_l{layer}", nn.Parameter(torch.empty(4 * hidden_size))
                )
            for gate in "ifo":
                self.register_parameter(
                    f"peephole_{gate}_l{layer}", nn.Parameter(torch.empty(hidden_size))
                )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.LSTM's initialisation, extended to the peephole weights.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -bound, bound)

    def layer_weights(self, layer: int) -> dict[str, torch.Tensor]:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        names += ("peephole_i", "peephole_f", "peephole_o")
        return {name: getattr(self, f"{name}_l{layer}") for name in names}

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        batch = x.size(0)
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            state = (zeros, zeros)
        h0, c0 = state
        layer_input = x.transpose(0, 1)  # (time, batch, features): one slice per step
        final_h, final_c = [], []
        for layer in range(self.num_layers):
            w = self.layer_weights(layer)
            x_gates = torch.matmul(layer_input, w["weight_ih"].t()) + w["bias_ih"] + w["bias_hh"]
            layer_input, h, c = peephole_steps(
                x_gates,
                h0[layer],
                c0[layer],
                w["weight_hh"],
                w["peephole_i"],
                w["peephole_f"],
                w["peephole_o"],
            )
            final_h.append(h)
            final_c.append(c)
            if layer < self.num_layers - 1 and self.dropout > 0:
                layer_input = nn.functional.dropout(layer_input, self.dropout, self.training)
        return layer_input.transpose(0, 1), (torch.stack(final_h), torch.stack(final_c))
