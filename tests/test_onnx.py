"""`charlstm export --format onnx`: a step model that onnxruntime runs to the same logits
and the same greedy text as PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import charlstm
from charlstm.cli import app
from charlstm.training.trainer import Trainer
from tests.conftest import make_text, quiet_console, small_config

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module", params=["lstm", "gru", "rnn"])
def cell_run(request, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp(f"onnx-{request.param}")
    corpus = root / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    cfg = small_config(corpus, root / "run", f"model.cell={request.param}",
                       "train.max_steps=40", "train.eval_every=40")  # fmt: skip
    Trainer(cfg, console=quiet_console(root / "log"), quiet=True).run()
    return root / "run"


def export(run: Path, out: Path):
    return CliRunner().invoke(
        app, ["export", "-c", str(run), "--format", "onnx", "--out", str(out)]
    )


def greedy(session, prime: str, length: int) -> str:
    """Greedy decoding with onnxruntime and the file's own metadata, nothing else."""
    meta = session.get_modelmeta().custom_metadata_map
    vocab = json.loads(meta["vocab"])
    layers, hidden = int(meta["layers"]), int(meta["hidden"])
    feeds = {i.name: np.zeros((layers, 1, hidden), np.float32) for i in session.get_inputs()[1:]}
    line_start = next((vocab.index(c) for c in (10, 32) if c in vocab), 0)  # as charlstm does
    ids, text = [line_start] + [vocab.index(ord(ch)) for ch in prime], prime
    for _ in range(length):
        logits, *state = session.run(None, {"ids": np.array([ids], np.int64), **feeds})
        feeds = dict(zip(feeds, state, strict=True))
        ids = [int(logits[0].argmax())]
        text += chr(vocab[ids[0]])
    return text


def test_onnx_logits_match_pytorch_over_300_characters(cell_run, tmp_path):
    result = export(cell_run, tmp_path / "m.onnx")
    assert result.exit_code == 0, result.output
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    model = charlstm.load(cell_run, "cpu")
    ids = model.vocab.encode(make_text(40, seed=5)[:300]).tolist()
    assert len(ids) == 300
    with torch.no_grad():
        expected, _ = model.net(torch.tensor([ids]))
    meta = session.get_modelmeta().custom_metadata_map
    layers, hidden = int(meta["layers"]), int(meta["hidden"])
    feeds = {i.name: np.zeros((layers, 1, hidden), np.float32) for i in session.get_inputs()[1:]}
    worst = 0.0
    for t, token in enumerate(ids):  # one step at a time, the state carried by the caller
        logits, *state = session.run(None, {"ids": np.array([[token]], np.int64), **feeds})
        feeds = dict(zip(feeds, state, strict=True))
        worst = max(worst, float(np.abs(logits[0] - expected[0, t].numpy()).max()))
    assert worst < 1e-5
    assert meta["cell"] == model.config.model.cell


def test_onnx_greedy_text_is_sample_greedy(cell_run, tmp_path):
    export(cell_run, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    result = CliRunner().invoke(app, ["sample", "-c", str(cell_run), "--greedy", "--prime",
                                      "the ", "--length", "120"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert greedy(session, "the ", 120) == result.output[:-1]


def test_a_peephole_model_and_a_bad_format_are_one_line(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    cfg = small_config(corpus, tmp_path / "run", "model.cell=peephole", "train.max_steps=2",
                       "train.eval_every=2")  # fmt: skip
    Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True).run()
    result = export(tmp_path / "run", tmp_path / "p.onnx")
    assert result.exit_code == 1 and "peephole cell has no ONNX operator" in result.output
    assert not (tmp_path / "p.onnx").exists()
    bad = CliRunner().invoke(app, ["export", "-c", str(tmp_path / "run"), "--format", "tflite",
                                   "--out", str(tmp_path / "x")])  # fmt: skip
    assert bad.exit_code == 1 and "--format must be html, onnx or safetensors" in bad.output


def test_the_readme_snippet_samples_from_the_file(trained_run, tmp_path, capsys):
    """The docs' ten lines, run as they are (the file's name and prime changed)."""
    export(trained_run, tmp_path / "model.onnx")
    page = Path(__file__).parent.parent / "docs" / "pages" / "export.md"
    readme = page.read_text(encoding="utf-8")
    code = readme.split("## ONNX")[1].split("```python\n")[1].split("```")[0]
    assert len(code.strip().splitlines()) <= 18
    code = code.replace('"model.onnx"', repr(str(tmp_path / "model.onnx")))
    exec(code.replace('"def "', '"the "'), {})
    text = capsys.readouterr().out
    assert text.startswith("the ") and len(text) == len("the ") + 300 + 1


def test_the_graph_refuses_ids_outside_the_vocabulary_and_an_empty_batch(cell_run, tmp_path):
    """An id outside the vocabulary makes its own row NaN (it read another row before,
    silently); an empty batch gives empty outputs (onnxruntime aborted the process), run
    in a child process so that a regression is a failure, not the end of the suite."""
    export(cell_run, tmp_path / "m.onnx")
    script = f"""
import json, numpy as np, onnxruntime as ort
s = ort.InferenceSession({str(tmp_path / "m.onnx")!r})
meta = s.get_modelmeta().custom_metadata_map
layers, hidden, size = int(meta["layers"]), int(meta["hidden"]), len(json.loads(meta["vocab"]))
def state(batch):
    return {{i.name: np.zeros((layers, batch, hidden), np.float32) for i in s.get_inputs()[1:]}}
logits, *after = s.run(None, {{"ids": np.array([[-1], [2], [size]], np.int64), **state(3)}})
assert np.isnan(logits[0]).all() and np.isnan(logits[2]).all() and np.isfinite(logits[1]).all()
assert all(np.isnan(a[:, 0]).all() and np.isfinite(a[:, 1]).all() for a in after)
empty = s.run(None, {{"ids": np.zeros((0, 1), np.int64), **state(0)}})
assert empty[0].shape == (0, size) and all(a.shape == (layers, 0, hidden) for a in empty[1:])
print("held")
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "held", done.stderr[-2000:]
