"""What every unit of a recurrent cell does on a text, per character: its output h and
the cell's own quantities (an LSTM's c and four gates, a GRU's two gates and candidate).

PyTorch's recurrent modules return only the last layer's outputs and the final state,
so the recording runs the checkpoint's own weights through the module's equations one
layer and one step at a time:

    LSTM (PyTorch's order i, f, g, o; the peephole cell adds its peephole terms):
        i, f, o = sigmoid(W_i x + b_i + U_i h), g = tanh(...), c = f c + i g, h = o tanh(c)
    GRU (order r, z, n):
        r, z = sigmoid(W x + b + U h + b'), n = tanh(W_n x + b_n + r (U_n h + b'_n)),
        h = (1 - z) n + z h
    RNN: h = tanh(W x + b + U h + b')

A test holds the recomputed h (and c) of every cell to the framework's own outputs.
Features of the text (inside a string literal, bracket depth, indentation, ...) are then
correlated with every unit, which is how the classic experiments found their "quote"
and "indent" cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console

from charlstm.data.vocab import Vocab
from charlstm.errors import CharlstmError
from charlstm.model import CharRNN
from charlstm.peephole import peephole_cell
from charlstm.progress import Work

# What each cell computes per unit, in the order the report offers them.
CELL_QUANTITIES = {
    "lstm": ("h", "c", "input", "forget", "output", "candidate"),
    "peephole": ("h", "c", "input", "forget", "output", "candidate"),
    "gru": ("h", "reset", "update", "candidate"),
    "rnn": ("h",),
}
QUANTITIES = CELL_QUANTITIES["lstm"]


TOP = 5  # likeliest next characters kept per position


@dataclass
class Activations:
    chars: list[str]  # one displayable piece per model input (a character, or a byte)
    values: dict[str, np.ndarray]  # quantity -> (time, layers, units), after reading each
    cell: str
    # -log p(character t | everything before it), nats; the first from a zero state
    surprisal: np.ndarray | None = None
    # after reading character t, the TOP likeliest next characters: [(char, p), ...]
    top: list[list[tuple[str, float]]] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values["h"].shape


@torch.no_grad()
def record(
    model: CharRNN,
    vocab: Vocab,
    text: str,
    unknown: str = "error",
    show_progress: bool = False,
    console: Console | None = None,
) -> Activations:
    """Run `text` through the model from a zero state and keep every unit's values."""
    cell = model.cfg.cell
    ids = vocab.encode(text, unknown=unknown)
    if len(ids) == 0:
        raise CharlstmError("nothing to inspect: the text is empty")
    model = model.float().eval()
    device = next(model.parameters()).device
    layer_input = model.embedding(torch.as_tensor(ids.astype(np.int64), device=device))
    per_layer: list[dict[str, torch.Tensor]] = []
    for layer in range(model.cfg.num_layers):
        with Work(
            f"inspecting layer {layer}", len(ids), "chars", console, visible=show_progress
        ) as work:
            trace = TRACES[cell](layer_input, layer_weights(model.rnn, layer, cell), work)
        per_layer.append(trace)
        layer_input = trace["h"]
    values = {
        q: torch.stack([t[q] for t in per_layer], dim=1).cpu().numpy()
        for q in CELL_QUANTITIES[cell]
    }  # fmt: skip
    surprisal, top = _predictions(model, vocab, per_layer[-1]["h"], ids)
    shown = [vocab.decode([i]) or "\ufffd" for i in ids.tolist()]
    return Activations(shown, values, cell, surprisal, top)


@torch.no_grad()
def _predictions(
    model: CharRNN, vocab: Vocab, last_h: torch.Tensor, ids: np.ndarray
) -> tuple[np.ndarray, list[list[tuple[str, float]]]]:
    """What the model expected: the surprisal of each character (from the h before it;
    the first from a zero state) and the likeliest characters after each."""
    before = torch.cat([torch.zeros_like(last_h[:1]), last_h[:-1]])
    log_p = torch.log_softmax(model.decoder(before).float(), dim=-1)
    targets = torch.as_tensor(ids.astype(np.int64), device=log_p.device)
    surprisal = -log_p.gather(1, targets[:, None])[:, 0]
    after = torch.softmax(model.decoder(last_h).float(), dim=-1)
    p, which = after.topk(min(TOP, vocab.size), dim=-1)
    names = [vocab.decode([i]) or "\ufffd" for i in range(vocab.size)]
    top = [
        [(names[i], round(float(q), 4)) for i, q in zip(row_ids, row_p, strict=True)]
        for row_ids, row_p in zip(which.tolist(), p.tolist(), strict=True)
    ]
    return surprisal.cpu().numpy(), top


def layer_weights(rnn: torch.nn.Module, layer: int, cell: str) -> dict[str, torch.Tensor]:
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    if cell == "peephole":
        names += ["peephole_i", "peephole_f", "peephole_o"]
    return {name: getattr(rnn, f"{name}_l{layer}") for name in names}


def _lstm_trace(x: torch.Tensor, w: dict[str, torch.Tensor], work: Work) -> dict[str, torch.Tensor]:
    """One LSTM layer over a (time, features) input from a zero state: (time, units)
    each. The step is the peephole cell's own (zero peepholes for a plain LSTM)."""
    hidden = w["weight_hh"].shape[1]
    zero = torch.zeros(1, hidden, device=x.device)
    peep = [w.get(f"peephole_{gate}", zero[0]) for gate in "ifo"]
    x_gates = x @ w["weight_ih"].T + w["bias_ih"] + w["bias_hh"]
    h, c = zero, zero
    trace: dict[str, list[torch.Tensor]] = {q: [] for q in CELL_QUANTITIES["lstm"]}
    for t in range(x.shape[0]):
        work.advance(1)  # and stops here when asked
        i, f, g, o, c, h = peephole_cell(x_gates[t : t + 1], h, c, w["weight_hh"], *peep)
        for name, value in zip(CELL_QUANTITIES["lstm"], (h, c, i, f, o, g), strict=True):
            trace[name].append(value[0])
    return {name: torch.stack(values) for name, values in trace.items()}


def _gru_trace(x: torch.Tensor, w: dict[str, torch.Tensor], work: Work) -> dict[str, torch.Tensor]:
    """One GRU layer, as nn.GRU computes it: the reset gate applies to the recurrent
    term with its bias (PyTorch's form, not the original paper's)."""
    hidden = w["weight_hh"].shape[1]
    x_gates = (x @ w["weight_ih"].T + w["bias_ih"]).split(hidden, dim=1)
    h = torch.zeros(1, hidden, device=x.device)
    trace: dict[str, list[torch.Tensor]] = {q: [] for q in CELL_QUANTITIES["gru"]}
    for t in range(x.shape[0]):
        work.advance(1)
        h_r, h_z, h_n = (h @ w["weight_hh"].T + w["bias_hh"]).split(hidden, dim=1)
        r = torch.sigmoid(x_gates[0][t] + h_r)
        z = torch.sigmoid(x_gates[1][t] + h_z)
        n = torch.tanh(x_gates[2][t] + r * h_n)
        h = (1 - z) * n + z * h
        for name, value in zip(CELL_QUANTITIES["gru"], (h, r, z, n), strict=True):
            trace[name].append(value[0])
    return {name: torch.stack(values) for name, values in trace.items()}


def _rnn_trace(x: torch.Tensor, w: dict[str, torch.Tensor], work: Work) -> dict[str, torch.Tensor]:
    """One Elman layer (nn.RNN's tanh)."""
    x_in = x @ w["weight_ih"].T + w["bias_ih"] + w["bias_hh"]
    h = torch.zeros(1, w["weight_hh"].shape[1], device=x.device)
    trace = []
    for t in range(x.shape[0]):
        work.advance(1)
        h = torch.tanh(x_in[t : t + 1] + h @ w["weight_hh"].T)
        trace.append(h[0])
    return {"h": torch.stack(trace)}


TRACES = {"lstm": _lstm_trace, "peephole": _lstm_trace, "gru": _gru_trace, "rnn": _rnn_trace}


GATES = ("input", "forget", "output", "reset", "update")
SATURATED = 0.1  # a gate below this is left-saturated, above 1 - this right-saturated


def saturation(acts: Activations) -> dict[str, dict[str, list[list[float]]]]:
    """Per gate the cell has: each unit's fraction of steps left-saturated (< 0.1) and
    right-saturated (> 0.9), per layer (as Karpathy, Johnson and Fei-Fei 2015 plot them:
    a forget gate right-saturated for a unit is a memory; an input gate's is a unit
    that writes whenever it can)."""
    found = {}
    for gate in GATES:
        if gate in acts.values:
            values = acts.values[gate]  # (time, layers, units)
            found[gate] = {
                "left": np.round((values < SATURATED).mean(axis=0), 4).tolist(),
                "right": np.round((values > 1 - SATURATED).mean(axis=0), 4).tolist(),
            }
    return found


# Features of the text, one value per character ---------------------------------------


@dataclass(frozen=True)
class Correlated:
    feature: str
    quantity: str
    layer: int
    unit: int
    r: float


def rank_units(
    acts: Activations, features: dict[str, np.ndarray], top: int = 8
) -> dict[str, list[Correlated]]:
    """Per feature, the (quantity, layer, unit) series with the largest |Pearson r|."""
    ranking: dict[str, list[Correlated]] = {}
    for name, feature in features.items():
        f = feature - feature.mean()
        f_norm = np.sqrt((f * f).sum())
        if f_norm < 1e-12:  # constant on this text (no strings, say): nothing to rank
            ranking[name] = []
            continue
        found: list[Correlated] = []
        for quantity, values in acts.values.items():
            series = values.reshape(len(feature), -1).astype(np.float64)
            centred = series - series.mean(axis=0)
            norms = np.sqrt((centred * centred).sum(axis=0)) * f_norm
            r = np.divide(f @ centred, norms, out=np.zeros(series.shape[1]), where=norms > 1e-12)
            for flat in np.argsort(-np.abs(r))[:top]:
                layer, unit = divmod(int(flat), acts.shape[2])
                found.append(Correlated(name, quantity, layer, unit, float(r[flat])))
        found.sort(key=lambda c: -abs(c.r))
        ranking[name] = found[:top]
    return ranking
