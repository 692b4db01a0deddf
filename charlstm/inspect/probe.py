"""Probes: which units carry a property of the text. A sparse (L1-penalised) logistic
regression from every layer's h (and an LSTM's c) after each character to a property of
that character, as the sentiment-neuron work found its one unit; the penalty chosen by
cross-validation over a grid; scikit-learn does the fitting.

The text is cut in two: the probe fits on the first three quarters and is scored on the
last quarter, which it never saw (contiguous, so no character's neighbours leak across).
Two controls say what the number means: the same probe on the input embedding alone
(what the current character tells without the network's memory) and on shuffled labels
(what chance gives).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from charlstm.errors import CharlstmError
from charlstm.inspect.activations import TRACES, layer_weights
from charlstm.model import CharRNN, has_cell_state
from charlstm.progress import Work

HELD_OUT = 0.25  # the last quarter of the text scores the probe
FIT_ROWS = 8000  # characters the fit reads, at most (sampled from the first part)
PENALTIES = np.logspace(-3, 0, 5)  # the grid of inverse L1 strengths (C)
FOLDS = 3
SPARSE_SLACK = 0.005  # cross-validated AUC given up for the sparsest probe
GATE_CHUNK = 8192  # characters whose LSTM gates are held at once


def _layer_states(x: torch.Tensor, w: dict[str, torch.Tensor], cell: str) -> dict:
    """One layer's h over a (time, features) input from a zero state, by the framework's
    own one-layer module (at its speed, not a step of Python per character); an LSTM's
    c from its gates, which h before each step gives all at once, and the elementwise
    recurrence c = f c + i g."""
    hidden = w["weight_hh"].shape[1]
    layer = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](
        x.shape[1], hidden, batch_first=True
    ).to(x.device)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        getattr(layer, f"{name}_l0").data = w[name].data
    h, state = torch.empty(len(x), hidden, device=x.device), None
    for start in range(0, len(x), GATE_CHUNK):  # the framework's workspace: a chunk's
        out, state = layer(x[None, start : start + GATE_CHUNK], state)
        h[start : start + GATE_CHUNK] = out[0]
    if cell != "lstm":
        return {"h": h}
    before = torch.cat([torch.zeros_like(h[:1]), h[:-1]])
    c = torch.empty_like(h)
    state = torch.zeros(hidden, device=x.device)
    for start in range(0, len(h), GATE_CHUNK):  # the gates of a chunk at a time: bounded
        at = slice(start, start + GATE_CHUNK)
        gates = x[at] @ w["weight_ih"].T + w["bias_ih"] + before[at] @ w["weight_hh"].T
        i, f, g, _ = (gates + w["bias_hh"]).split(hidden, dim=1)
        i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g)
        for t in range(len(i)):
            state = f[t] * state + i[t] * g[t]
            c[start + t] = state
    return {"h": h, "c": c}


@torch.no_grad()
def unit_states(
    net: CharRNN, ids: np.ndarray, show_progress: bool = False, console: Console | None = None
) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
    """(characters, units) float32: each layer's h after each character, and an LSTM's
    c, from a zero state; and the (quantity, layer, unit) of each column."""
    cell = net.cfg.cell
    quantities = ("h", "c") if has_cell_state(cell) else ("h",)
    net = net.float().eval()
    device = next(net.parameters()).device
    layer_input = net.embedding(torch.as_tensor(ids.astype(np.int64), device=device))
    hidden = net.cfg.hidden_size
    states = np.empty((len(ids), net.cfg.num_layers * len(quantities) * hidden), np.float32)
    names = []
    for layer in range(net.cfg.num_layers):
        weights = layer_weights(net.rnn, layer, cell)
        with Work(f"probe: reading layer {layer}", len(ids), "chars", console,
                  visible=show_progress) as work:  # fmt: skip
            if cell == "peephole":  # its gates read c: a step at a time
                trace = TRACES[cell](layer_input, weights, work)
            else:
                trace = _layer_states(layer_input, weights, cell)
        for q in quantities:  # filled in place: the states are held once
            states[:, len(names) : len(names) + hidden] = trace[q].cpu().numpy()
            names += [(q, layer, u) for u in range(hidden)]
        layer_input = trace["h"]
        del trace
    return states, names


def _auc(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ROC AUC of each column of scores (rows: characters) for the binary labels y,
    by ranks (Mann-Whitney); ties share their rank."""
    from scipy.stats import rankdata

    positive = y.astype(bool)
    n1, n0 = positive.sum(), (~positive).sum()
    found = np.empty(scores.shape[1])
    for start in range(0, scores.shape[1], 64):  # 64 columns' ranks at a time: bounded
        ranks = rankdata(scores[:, start : start + 64], axis=0)
        found[start : start + 64] = (ranks[positive].sum(axis=0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return found


@dataclass
class Fitted:
    auc: float
    accuracy: float
    units: int  # non-zero weights
    weights: np.ndarray  # one per column (standardised features)


def _fit(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, Fitted]:
    """The L1 probe on the first part, scored on the held-out last part. The penalty:
    the strongest on the grid whose cross-validated AUC is within SPARSE_SLACK of the
    best (fewer units for as good a probe: the one-standard-error rule's spirit)."""
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.preprocessing import StandardScaler

    cut = int(len(y) * (1 - HELD_OUT))
    rows = np.random.default_rng(seed).permutation(cut)[:FIT_ROWS]
    scaler = StandardScaler().fit(x[rows])  # the rows fitted: no float64 copy of them all
    fit_x, fit_y = scaler.transform(x[rows]), y[rows]
    # liblinear: six times faster than saga on correlated states
    common = {"solver": "liblinear", "tol": 1e-3, "random_state": seed}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence at tol 1e-3, attribute renames
        search = LogisticRegressionCV(Cs=PENALTIES, l1_ratios=(1.0,), cv=FOLDS,
                                      scoring="roc_auc", **common)  # fmt: skip
        search.fit(fit_x, fit_y)
        scores = np.asarray(next(iter(search.scores_.values()))).reshape(FOLDS, -1).mean(axis=0)
        chosen = PENALTIES[int(np.argmax(scores >= scores.max() - SPARSE_SLACK))]
        probe = LogisticRegression(C=chosen, l1_ratio=1.0, **common).fit(fit_x, fit_y)
    test = (x[cut:] - scaler.mean_.astype(np.float32)) / scaler.scale_.astype(np.float32)
    chance = probe.predict_proba(test)[:, 1]
    weights = probe.coef_[0]
    fitted = Fitted(float(roc_auc_score(y[cut:], chance)),
                    float(accuracy_score(y[cut:], chance > 0.5)),
                    int((weights != 0).sum()), weights)  # fmt: skip
    return chance, fitted


@dataclass
class ProbeResult:
    feature: str
    chars: int
    positives: float  # share of characters with the property
    probe: Fitted
    top: list[dict]  # the units with the largest weights
    best_unit: dict  # the one unit that alone separates best, on the held-out part
    embedding: Fitted  # control: the input embedding alone
    shuffled: Fitted  # control: labels shuffled
    # on the held-out part, per character: the probe's probability, the best unit's
    # value, the label (for the report's colouring)
    held_out: dict[str, np.ndarray] | None = None

    def to_dict(self) -> dict:
        def fitted(f: Fitted) -> dict:
            return {"auc": f.auc, "accuracy": f.accuracy, "units": f.units}

        return {"feature": self.feature, "chars": self.chars, "positives": self.positives,
                "probe": fitted(self.probe), "top_units": self.top, "best_unit": self.best_unit,
                "controls": {"embedding": fitted(self.embedding),
                             "shuffled labels": fitted(self.shuffled)}}  # fmt: skip


def probe_features(net: CharRNN, ids: np.ndarray, features: dict[str, np.ndarray],
                   seed: int = 0, top: int = 8, show_progress: bool = False,
                   console: Console | None = None) -> list[ProbeResult]:  # fmt: skip
    """Fit and score a probe of each binary property (labels, one per id): the states
    are read once for all."""
    cut = int(len(ids) * (1 - HELD_OUT))
    wanted = {}
    for name, labels in features.items():
        y = (np.asarray(labels) > 0).astype(np.int64)
        for part, where in ((y[:cut], "the fitted part"), (y[cut:], "the held-out last quarter")):
            if part.min() == part.max():
                kind = "every" if part.min() else "no"
                raise CharlstmError(
                    f"--feature {name}: {kind} character of {where} has it; a probe "
                    "needs both (a longer text, or another feature)"
                )
        wanted[name] = y
    x, names = unit_states(net, ids, show_progress, console)
    device = next(net.parameters()).device
    with torch.no_grad():
        embedded = net.embedding(torch.as_tensor(ids.astype(np.int64), device=device))
    embedded = embedded.float().cpu().numpy()
    return [_probe(x, names, embedded, name, y, cut, seed, top) for name, y in wanted.items()]


def _unit(names, i: int, **more) -> dict:
    return {"quantity": names[i][0], "layer": names[i][1], "unit": names[i][2], **more}


def _probe(x, names, embedded, name: str, y: np.ndarray, cut: int, seed: int,
           top: int) -> ProbeResult:  # fmt: skip
    chance, fitted = _fit(x, y, seed)
    order = np.argsort(-np.abs(fitted.weights))[:top]
    chosen = [_unit(names, i, weight=float(fitted.weights[i]))
              for i in order if fitted.weights[i] != 0]  # fmt: skip
    single = _auc(x[cut:], y[cut:])
    best = int(np.argmax(np.maximum(single, 1 - single)))
    best_unit = _unit(names, best, auc=float(max(single[best], 1 - single[best])),
                      sign=1 if single[best] >= 0.5 else -1)  # fmt: skip
    shuffled = y.copy()
    np.random.default_rng([seed, 1]).shuffle(shuffled[:cut])  # not the rows' permutation
    held_out = {"probe": chance, "unit": x[cut:, best], "label": y[cut:]}
    return ProbeResult(name, len(y), float(y.mean()), fitted, chosen, best_unit,
                       _fit(embedded, y, seed)[1], _fit(x, shuffled, seed)[1],
                       held_out)  # fmt: skip


SHOWN_CHARS = 6000  # held-out characters the report colours, at most


def probe_page(chars: list[str], results: list[ProbeResult], title: str) -> str:
    """The report: per feature, the held-out text coloured by the probe's probability or
    by its best unit, the numbers beside it."""
    from charlstm.templates import render_page

    start = len(chars) - len(results[0].held_out["label"])
    shown = chars[start : start + SHOWN_CHARS]
    features = []
    for r in results:
        unit = r.held_out["unit"][:SHOWN_CHARS]
        scale = float(np.abs(unit).max()) or 1.0
        features.append({
            "name": r.feature, "numbers": r.to_dict(),
            "probe": np.round(r.held_out["probe"][:SHOWN_CHARS], 3).tolist(),
            "unit": np.round(unit / scale, 3).tolist(),
            "label": r.held_out["label"][:SHOWN_CHARS].tolist(),
        })  # fmt: skip
    data = {"chars": shown, "features": features}
    return render_page("charlstm.inspect", "probe.html", "probe.js", title=title, data=data,
                       results=[r.to_dict() for r in results])  # fmt: skip


# Documents: a property per document, read at its end --------------------------------------
MAX_DOCUMENTS = 100_000


def read_labelled(path: Path, column: str, max_chars: int) -> list[tuple[str, str]]:
    """(text, label) of each record of a .jsonl or .csv file with a `text` column and
    `column`, in order, until max_chars characters of text are read."""
    import csv
    import json

    from charlstm.data.corpus import read_text_file

    if not path.is_file():
        raise CharlstmError(f"--documents {path}: no such file")
    content = read_text_file(path)
    if path.suffix == ".csv":
        rows = csv.DictReader(content.splitlines())
        if (
            rows.fieldnames is None
            or "text" not in rows.fieldnames
            or column not in rows.fieldnames
        ):
            raise CharlstmError(f"--documents {path}: needs the columns text and {column} "
                                f"(it has {', '.join(rows.fieldnames or ['none'])})")  # fmt: skip
        records = ((n, row) for n, row in enumerate(rows, 2))
    elif path.suffix == ".jsonl":
        records = ((n, json.loads(line)) for n, line in enumerate(content.splitlines(), 1)
                   if line.strip())  # fmt: skip
    else:
        raise CharlstmError(f"--documents {path}: a .jsonl or .csv file (text and {column})")
    found, chars = [], 0
    try:
        for number, record in records:
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CharlstmError(f"--documents {path} line {number}: no text")
            if record.get(column) in (None, ""):
                raise CharlstmError(f"--documents {path} line {number}: no column {column!r}")
            found.append((record["text"], str(record[column])))
            chars += len(record["text"])
            if chars >= max_chars or len(found) >= MAX_DOCUMENTS:
                break
    except json.JSONDecodeError as err:
        raise CharlstmError(f"--documents {path}: a line is not JSON ({err.msg})") from None
    return found


@torch.no_grad()
def end_states(
    net: CharRNN, vocab, texts: list[str], unknown: str
) -> tuple[np.ndarray, np.ndarray]:
    """Each document's states at its end (as unit_states orders them) and its mean input
    embedding (the control), read from its start: a document model's document start, a
    text model's line start."""
    from charlstm.generate.context import line_start_id

    device = next(net.parameters()).device
    start = [vocab.end_id] if vocab.documents else [line_start_id(vocab)]
    rows, embedded = [], []
    for text in texts:
        ids = torch.tensor([start + vocab.encode(text, unknown=unknown).tolist()], device=device)
        _, state = net(ids, None)
        parts = state if isinstance(state, tuple) else (state,)
        rows.append(torch.cat([p[layer, 0] for layer in range(net.cfg.num_layers) for p in parts]))
        embedded.append(net.embedding(ids[0]).float().mean(dim=0))
    return torch.stack(rows).float().cpu().numpy(), torch.stack(embedded).cpu().numpy()


def probe_documents(net: CharRNN, vocab, documents: list[tuple[str, str]], unknown: str,
                    seed: int = 0, top: int = 8) -> list[ProbeResult]:  # fmt: skip
    """One probe per label (that label against the rest), from the states at each
    document's end; the last quarter of the documents held out."""
    texts = [text for text, _ in documents]
    labels = np.array([label for _, label in documents])
    x, embedded = end_states(net, vocab, texts, unknown)
    quantities = ("h", "c") if has_cell_state(net.cfg.cell) else ("h",)
    names = [(q, layer, u) for layer in range(net.cfg.num_layers) for q in quantities
             for u in range(net.cfg.hidden_size)]  # fmt: skip
    kinds = sorted(set(labels.tolist()))
    if len(kinds) < 2:
        raise CharlstmError(f"--documents: every document has the label {kinds[0]!r}; a "
                            "probe needs two kinds or more")  # fmt: skip
    cut = int(len(labels) * (1 - HELD_OUT))
    results = []
    for kind in kinds[1:] if len(kinds) == 2 else kinds:
        y = (labels == kind).astype(np.int64)
        if y[:cut].min() == y[:cut].max() or y[cut:].min() == y[cut:].max():
            raise CharlstmError(f"--documents: label {kind!r} needs documents with and without "
                                "it in both the first three quarters and the last")  # fmt: skip
        results.append(_probe(x, names, embedded, f"label={kind}", y, cut, seed, top))
    return results
