"""`charlstm export --format onnx`: the model as an ONNX step model, for runtimes other
than PyTorch (onnxruntime, from any language it binds).

One step: `ids` (batch, 1) int64 and the recurrent state in, `logits` (batch, vocab) and
the new state out; `h` (and, for an LSTM, `c`) are (layers, batch, hidden), zeros to
start. A caller loops: feed the prime one id at a time (or all at once: the time axis is
dynamic too), then draw from the logits and feed the draw back. The vocabulary (each
id's code point, or byte; reserved ids past U+10FFFF), the cell and the document end id
travel in the file's metadata, so the file alone is enough to sample from.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from charlstm.errors import CharlstmError
from charlstm.model import CharRNN, has_cell_state

OPSET = 17


class _Step(nn.Module):
    """One step, guarded against what a caller may send: an id outside the vocabulary
    gives its row NaN logits and state (a Gather would read another row, or fail), and
    an empty batch gives empty outputs (onnxruntime's recurrent operators abort the
    process on one): a zero row is added to every batch and dropped again, which costs
    a row of work per step."""

    def __init__(self, net: CharRNN):
        super().__init__()
        self.net = net
        self.cell_state = has_cell_state(net.cfg.cell)
        self.vocab = net.embedding.num_embeddings

    def forward(self, ids: torch.Tensor, h: torch.Tensor, c: torch.Tensor | None = None):
        valid = (ids >= 0) & (ids < self.vocab)
        ids = torch.cat([torch.where(valid, ids, 0), ids.new_zeros((1, ids.shape[1]))])
        state = [torch.cat([s, s.new_zeros((s.shape[0], 1, s.shape[2]))], dim=1)
                 for s in ((h, c) if self.cell_state else (h,))]  # fmt: skip
        logits, state = self.net(ids, tuple(state) if self.cell_state else state[0])
        bad = ~valid.all(dim=1)  # rows that read an id outside the vocabulary
        logits = logits[:-1, -1].masked_fill(bad[:, None], float("nan"))
        states = state if self.cell_state else (state,)
        out = [s[:, :-1].masked_fill(bad[None, :, None], float("nan")) for s in states]
        return (logits, *out)


def metadata(model) -> dict[str, str]:
    m = model.config.model
    return {
        "charlstm_format": "charlstm-onnx/1",
        "cell": m.cell,
        "layers": str(m.num_layers),
        "hidden": str(m.hidden_size),
        "vocab_mode": model.vocab.mode,
        "vocab": json.dumps(list(model.vocab.code_points)),
        "end_id": "" if model.vocab.end_id is None else str(model.vocab.end_id),
        "labels": json.dumps({n: model.vocab.label_id(n) for n in model.vocab.labels}),
        "step": str(model.step),
    }


def export_onnx(model, out: Path) -> int:
    """Write the step model; returns the file's size in bytes."""
    try:
        import onnx
    except ImportError:
        raise CharlstmError(
            "--format onnx needs the onnx package: pip install 'charlstm[onnx]'"
        ) from None
    net = model.net.cpu().eval()
    cell = model.config.model.cell
    if cell == "peephole":
        raise CharlstmError(
            "--format onnx: the peephole cell has no ONNX operator (its gates read the cell "
            "state); export an lstm, gru or rnn model"
        )
    step = _Step(net).eval()
    state = net.init_state(1, "cpu")
    ids = torch.zeros(1, 1, dtype=torch.long)
    inputs = (ids, *state) if isinstance(state, tuple) else (ids, state)
    names_in = ["ids", "h", "c"][: len(inputs)]
    names_out = ["logits", "h_out", "c_out"][: len(inputs)]
    axes = {"ids": {0: "batch", 1: "time"}, "logits": {0: "batch"}}
    for name in names_in[1:] + names_out[1:]:
        axes[name] = {1: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on dropout and batch_first
        torch.onnx.export(
            step, inputs, str(out), input_names=names_in, output_names=names_out,
            dynamic_axes=axes, opset_version=OPSET, dynamo=False,
        )  # fmt: skip
    graph = onnx.load(str(out))
    for key, value in metadata(model).items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(graph, str(out))
    return out.stat().st_size
