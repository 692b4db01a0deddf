"""What every LSTM unit does on a text: h, c and the four gates, per character.

nn.LSTM returns only the last layer's outputs and the final state, so the recording
runs the checkpoint's own weights through nn.LSTM's equations one layer and one step
at a time (the peephole cell adds its peephole terms):

    gates = W_ih x + b_ih + W_hh h + b_hh, split into i, f, g, o (PyTorch's order)
    i, f, o = sigmoid(.), g = tanh(.), c = f * c + i * g, h = o * tanh(c)

A test checks the recomputed h and c against nn.LSTM's own outputs. Features of the
text (inside a string literal, bracket depth, indentation, ...) are then correlated with
every unit, which is how the classic experiments found their "quote" and "indent" cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from charlstm import interrupt
from charlstm.errors import CharlstmError
from charlstm.model import CharRNN
from charlstm.peephole import peephole_cell
from charlstm.vocab import Vocab

QUANTITIES = ("h", "c", "input", "forget", "output", "candidate")


@dataclass
class Activations:
    chars: list[str]  # one displayable piece per model input (a character, or a byte)
    values: dict[str, np.ndarray]  # quantity -> (time, layers, units), after reading each
    cell: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.values["h"].shape


@torch.no_grad()
def record(model: CharRNN, vocab: Vocab, text: str, unknown: str = "error") -> Activations:
    """Run `text` through the model from a zero state and keep every unit's values."""
    cell = model.cfg.cell
    if cell not in ("lstm", "peephole"):
        raise CharlstmError(
            f"inspect reads LSTM gates and cell states; this checkpoint's model.cell is {cell}"
        )
    ids = vocab.encode(text, unknown=unknown)
    if len(ids) == 0:
        raise CharlstmError("nothing to inspect: the text is empty")
    model = model.float().eval()
    device = next(model.parameters()).device
    layer_input = model.embedding(torch.as_tensor(ids.astype(np.int64), device=device))
    per_layer: list[dict[str, torch.Tensor]] = []
    for layer in range(model.cfg.num_layers):
        trace = _layer_trace(layer_input, _weights(model.rnn, layer, cell))
        per_layer.append(trace)
        layer_input = trace["h"]
    values = {q: torch.stack([t[q] for t in per_layer], dim=1).cpu().numpy() for q in QUANTITIES}
    return Activations([vocab.decode([i]) or "\ufffd" for i in ids.tolist()], values, cell)


def _weights(rnn: torch.nn.Module, layer: int, cell: str) -> dict[str, torch.Tensor]:
    names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    if cell == "peephole":
        names += ["peephole_i", "peephole_f", "peephole_o"]
    return {name: getattr(rnn, f"{name}_l{layer}") for name in names}


def _layer_trace(x: torch.Tensor, w: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One layer over a (time, features) input from a zero state: (time, units) each.
    The step is the peephole cell's own (zero peepholes for a plain LSTM)."""
    hidden = w["weight_hh"].shape[1]
    zero = torch.zeros(1, hidden, device=x.device)
    peep = [w.get(f"peephole_{gate}", zero[0]) for gate in "ifo"]
    x_gates = x @ w["weight_ih"].T + w["bias_ih"] + w["bias_hh"]
    h, c = zero, zero
    trace: dict[str, list[torch.Tensor]] = {q: [] for q in QUANTITIES}
    for t in range(x.shape[0]):
        interrupt.check("inspection")
        i, f, g, o, c, h = peephole_cell(x_gates[t : t + 1], h, c, w["weight_hh"], *peep)
        for name, value in zip(QUANTITIES, (h, c, i, f, o, g), strict=True):
            trace[name].append(value[0])
    return {name: torch.stack(values) for name, values in trace.items()}


# Features of the text, one value per character ---------------------------------------


def string_literal_mask(text: str) -> np.ndarray:
    """1 inside a string literal, quotes included: '...', "...", '''...''', \"\"\"...\"\"\",
    with backslash escapes; a # comment outside a string runs to the end of its line."""
    inside = np.zeros(len(text), dtype=np.float32)
    quote: str | None = None
    in_comment = False
    pos = 0
    while pos < len(text):
        char = text[pos]
        if quote is None:
            if in_comment:
                in_comment = char != "\n"
            elif char == "#":
                in_comment = True
            elif char in "'\"":
                quote = char * 3 if text.startswith(char * 3, pos) else char
                inside[pos : pos + len(quote)] = 1
                pos += len(quote)
                continue
            pos += 1
            continue
        inside[pos] = 1
        if char == "\\":
            inside[pos : pos + 2] = 1
            pos += 2
        elif text.startswith(quote, pos):
            inside[pos : pos + len(quote)] = 1
            pos += len(quote)
            quote = None
        else:
            if char == "\n" and len(quote) == 1:  # an unterminated one-line string ends
                quote = None
            pos += 1
    return inside


def builtin_features(text: str) -> dict[str, np.ndarray]:
    strings = string_literal_mask(text)
    depth = np.zeros(len(text), dtype=np.float32)
    indent = np.zeros(len(text), dtype=np.float32)
    column = np.zeros(len(text), dtype=np.float32)
    after_newline = np.zeros(len(text), dtype=np.float32)
    level = 0
    line_start = 0
    for pos, char in enumerate(text):
        if not strings[pos]:
            level += char in "([{"
            level = max(0, level - (char in ")]}"))
        depth[pos] = level
        if pos == line_start:
            after_newline[pos] = 1
            end = text.find("\n", line_start)
            line = text[line_start : end if end >= 0 else len(text)]
            width = len(line) - len(line.lstrip(" \t"))
        indent[pos] = width
        column[pos] = pos - line_start
        if char == "\n":
            line_start = pos + 1
    return {
        "string literal": strings,
        "bracket depth": depth,
        "indentation": indent,
        "position in line": column,
        "after newline": after_newline,
    }


def regex_feature(text: str, pattern: str) -> np.ndarray:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise CharlstmError(
            f"--feature: {pattern!r} is not a regular expression ({error})"
        ) from None
    inside = np.zeros(len(text), dtype=np.float32)
    for match in compiled.finditer(text):
        inside[match.start() : match.end()] = 1
    return inside


def parse_feature(spec: str, text: str) -> tuple[str, np.ndarray]:
    name, sep, pattern = spec.partition("=")
    if not sep or not name or not pattern:
        raise CharlstmError(f"--feature takes name=REGEX (got {spec!r})")
    return name, regex_feature(text, pattern)


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
