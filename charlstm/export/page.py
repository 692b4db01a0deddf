"""`charlstm export`: a trained model as one self-contained web page that writes text.

The page (web/generate.html, with web/generate.js inlined) needs no network and no
server: the weights travel inside it as base64 (float16 by default, half the size;
float32 for exactly the numbers of `charlstm sample`), with the vocabulary and the few
settings the page's own forward pass needs. Python only fills in that data.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from charlstm.checkpoint import Trained
from charlstm.errors import CharlstmError
from charlstm.options import ExportSettings
from charlstm.templates import render_page

PRECISIONS = {"fp16": "<f2", "fp32": "<f4"}


@dataclass(frozen=True)
class Exported:
    path: Path
    bytes: int
    parameters: int


def check_precision(precision: str) -> None:
    ExportSettings(precision=precision)  # the rule is the settings' own


def model_data(model: Trained, precision: str) -> dict:
    """The page's view of the model: settings, vocabulary in id order, and every weight
    (row-major, one buffer) with its offset and size in numbers."""
    check_precision(precision)
    m = model.config.model
    weights = dict(model.net.state_dict())
    if m.tie_weights:  # one matrix serves both ends; the page reuses it
        weights.pop("decoder.weight", None)
    offsets, chunks, at = {}, [], 0
    for name, tensor in weights.items():
        values = tensor.detach().float().cpu().numpy().astype(PRECISIONS[precision]).ravel()
        offsets[name] = [at, int(values.size)]
        chunks.append(values.tobytes())
        at += values.size
    return {
        "cell": m.cell,
        "layers": m.num_layers,
        "hidden": m.hidden_size,
        "embedding": m.embedding_dim,
        "mode": model.vocab.mode,
        "vocab": list(model.vocab.code_points),
        # a document model: its end id, and each label's id, by name
        "end": model.vocab.end_id,
        "labels": {name: model.vocab.label_id(name) for name in model.vocab.labels},
        "precision": precision,
        "tensors": offsets,
        "data": base64.b64encode(b"".join(chunks)).decode("ascii"),
    }


def export_page(model: Trained, out: Path, precision: str = "fp16", title: str = "") -> Exported:
    data = model_data(model, precision)
    m = model.config.model
    title = title or f"charlstm: {m.num_layers}x{m.hidden_size} {m.cell}"
    about = (
        f"A character-level {m.cell.upper()} ({model.net.num_parameters():,} parameters, "
        f"vocabulary of {model.vocab.size}, {model.step:,} training steps, {precision} "
        "weights)."
    )
    page = render_page(
        "charlstm.export", "generate.html", "generate.js", title=title, about=about, model=data
    )
    try:
        out.write_text(page, encoding="utf-8")
    except OSError as err:
        raise CharlstmError(f"cannot write {out}: {err.strerror or err}") from None
    return Exported(out, len(page.encode("utf-8")), model.net.num_parameters())
