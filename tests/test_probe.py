"""Probes: the units that carry a property, found by a sparse logistic regression."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.config import ModelConfig
from charlstm.data.vocab import Vocab
from charlstm.errors import CharlstmError
from charlstm.inspect.activations import record
from charlstm.inspect.probe import probe_features, unit_states
from charlstm.model import CharRNN

pytest.importorskip("sklearn")

TEXT = "".join(np.random.default_rng(0).choice(list("ab(c) 'd'\n"), 3000))


def network(cell: str) -> tuple[CharRNN, Vocab]:
    torch.manual_seed(1)
    vocab = Vocab.from_code_points(map(ord, sorted(set(TEXT))))
    net = CharRNN(vocab.size, ModelConfig(cell=cell, embedding_dim=6, hidden_size=16,
                                          num_layers=2)).eval()  # fmt: skip
    with torch.no_grad():
        for weight in net.rnn.parameters():
            weight.mul_(2)
    return net, vocab


@pytest.mark.parametrize("cell", ["lstm", "peephole", "gru", "rnn"])
def test_the_states_a_probe_reads_are_the_recorded_ones(cell):
    net, vocab = network(cell)
    ids = vocab.encode(TEXT[:500])
    states, names = unit_states(net, ids)
    acts = record(net, vocab, TEXT[:500])
    for column, (quantity, layer, unit) in enumerate(names):
        np.testing.assert_allclose(states[:, column], acts.values[quantity][:, layer, unit],
                                   atol=1e-4)  # fmt: skip
    assert {q for q, _, _ in names} == ({"h", "c"} if cell in ("lstm", "peephole") else {"h"})


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_probe_finds_the_unit_that_carries_a_property_by_construction(cell):
    net, vocab = network(cell)
    ids = vocab.encode(TEXT)
    carrier = record(net, vocab, TEXT).values["h"][:, 1, 5]  # layer 1, unit 5
    labels = carrier > np.median(carrier)
    (found,) = probe_features(net, ids, {"by construction": labels})
    best = found.best_unit
    assert (best["quantity"], best["layer"], best["unit"]) == ("h", 1, 5)
    assert best["auc"] == pytest.approx(1.0)
    assert found.probe.auc > 0.99 and found.probe.accuracy > 0.95
    assert (found.top[0]["layer"], found.top[0]["unit"]) == (1, 5)
    assert abs(found.shuffled.auc - 0.5) < 0.15  # chance
    assert found.embedding.auc < found.probe.auc


def test_probe_from_the_command_line(trained_run, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat.\nthe dog ran to the log.\n" * 60)
    said = CliRunner().invoke(app, ["probe", "-c", str(trained_run), "--text", str(text),
                                    "--feature", "after newline", "--feature", "the=the",
                                    "--json"])  # fmt: skip
    assert said.exit_code == 0, said.output
    found = {r["feature"]: r for r in json.loads(said.stdout)}
    assert set(found) == {"after newline", "the"}
    for r in found.values():
        assert r["probe"]["auc"] > 0.9 and r["controls"]["shuffled labels"]["auc"] < 0.8
        assert r["top_units"] and r["best_unit"]["auc"] > 0.5
    page = tmp_path / "probe.html"
    shown = CliRunner().invoke(app, ["probe", "-c", str(trained_run), "--text", str(text),
                                     "--feature", "the=the", "--out", str(page)])  # fmt: skip
    assert "control: embedding" in shown.stdout and "best single unit" in shown.stdout
    report = page.read_text(encoding="utf-8")
    data = json.loads(
        report[
            report.index("const DATA = ") + 13 : report.index(";\n", report.index("const DATA = "))
        ]
    )
    (feature,) = data["features"]
    held_out = len(data["chars"])
    assert feature["name"] == "the" and len(feature["probe"]) == len(feature["unit"]) == held_out
    assert held_out == len(text.read_text()) - int(len(text.read_text()) * 0.75)
    # the label marks the held-out "the"s
    marked = "".join(c for c, on in zip(data["chars"], feature["label"], strict=True) if on)
    assert marked and set(marked) <= set("the")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--feature", "nothing"], "--feature 'nothing': give NAME=REGEX or one of: string"),
        (["--feature", "z=zebra"], "--feature z: no character of the fitted part has it"),
        (["--feature", "x=(a"], "is not a regular expression"),
        (["--feature", "x=a", "--max-chars", "5"], "--max-chars must be in 100..200000"),
        (["--feature", "x=a", "--text", "missing.txt"], "--text missing.txt: no such file"),
    ],
)
def test_bad_probes_are_one_line(trained_run, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("a cat sat.\n" * 50)
    base = ["probe", "-c", str(trained_run), "--text", "text.txt"]
    said = CliRunner().invoke(app, base + args)
    assert said.exit_code == 1 and message in said.stderr, said.output
    assert len(said.stderr.strip().splitlines()) == 1


def test_a_feature_on_every_character_is_refused():
    net, vocab = network("rnn")
    with pytest.raises(CharlstmError, match="every character of the fitted part"):
        probe_features(net, vocab.encode(TEXT[:400]), {"all": np.ones(400)})


def test_a_label_per_document_is_found_in_the_states_at_its_end(trained_run, tmp_path):
    """Documents of two kinds, told apart by a word early in the text: the states at
    each document's end must still carry it (the embedding's mean barely does)."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(240):
        kind = ["cat", "dog"][i % 2]
        filler = " ".join(rng.choice(["the", "a", "sat", "on", "mat", "ran", "log"], 4))
        rows.append({"text": f"the {kind} {filler}", "kind": kind})
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    said = CliRunner().invoke(app, ["probe", "-c", str(trained_run), "--documents", str(path),
                                    "--label-column", "kind", "--json"])  # fmt: skip
    assert said.exit_code == 0, said.output
    (found,) = json.loads(said.stdout)
    assert found["feature"] == "label=dog" and found["chars"] == 240
    assert found["probe"]["auc"] > 0.9
    assert found["controls"]["shuffled labels"]["auc"] < 0.75
    csv_file = tmp_path / "docs.csv"
    csv_file.write_text("text,kind\n" + "".join(f"{r['text']},{r['kind']}\n" for r in rows))
    again = CliRunner().invoke(app, ["probe", "-c", str(trained_run), "--documents",
                                     str(csv_file), "--label-column", "kind"])  # fmt: skip
    assert again.exit_code == 0 and "label=dog" in again.stdout and "documents" in again.stdout
    missing = CliRunner().invoke(app, ["probe", "-c", str(trained_run), "--documents",
                                       str(path), "--label-column", "colour"])  # fmt: skip
    assert missing.exit_code == 1 and "no column 'colour'" in missing.stderr
    both = CliRunner().invoke(app, ["probe", "-c", str(trained_run), "--documents", str(path),
                                    "--feature", "x=a"])  # fmt: skip
    assert both.exit_code == 1 and "leave out --feature" in both.stderr
