"""Ablation: the column-zeroing copy is exactly the model with units held at 0; eval and
sample take --ablate; on the counter task the counting unit matters most."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charlstm.checkpoint import load_for_inference
from charlstm.cli import app
from charlstm.config import ModelConfig
from charlstm.errors import CharlstmError
from charlstm.inspect.ablation import ablated, parse_units, per_char_loss
from charlstm.model import CharRNN
from charlstm.peephole import peephole_cell


def held_at_zero(model: CharRNN, ids: list[int], units: list[tuple[int, int]]) -> torch.Tensor:
    """Reference: step by step through every layer, setting h and c of the units to 0
    after each step. Returns the logits (time, vocab)."""
    layers, hidden = model.cfg.num_layers, model.cfg.hidden_size
    h = [torch.zeros(1, hidden) for _ in range(layers)]
    c = [torch.zeros(1, hidden) for _ in range(layers)]
    zero = torch.zeros(hidden)
    out = []
    for i in ids:
        x = model.embedding.weight[i][None, :]
        for layer in range(layers):
            w = {n: getattr(model.rnn, f"{n}_l{layer}") for n in
                 ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}  # fmt: skip
            gates = x @ w["weight_ih"].T + w["bias_ih"] + w["bias_hh"]
            *_, c[layer], h[layer] = peephole_cell(gates, h[layer], c[layer], w["weight_hh"],
                                                   zero, zero, zero)  # fmt: skip
            for lay, unit in units:
                if lay == layer:
                    h[layer][0, unit] = 0
                    c[layer][0, unit] = 0
            x = h[layer]
        out.append(model.decoder(x)[0])
    return torch.stack(out)


@pytest.mark.parametrize("tie", [False, True])
@torch.no_grad()
def test_zeroed_columns_equal_units_held_at_zero(tie):
    torch.manual_seed(0)
    cfg = ModelConfig(embedding_dim=24 if tie else 8, hidden_size=24, num_layers=2,
                      tie_weights=tie)  # fmt: skip
    model = CharRNN(11, cfg).eval()
    ids = [1, 4, 2, 9, 9, 0, 3, 7, 5, 1, 2]
    units = [(0, 3), (1, 7), (1, 0)]
    expected = held_at_zero(model, ids, units)
    logits, _ = ablated(model, units)(torch.tensor([ids]))
    torch.testing.assert_close(logits[0], expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(model(torch.tensor([ids]))[0][0], expected, atol=1e-3)
    if tie:  # the original keeps its tied, untouched weights
        assert model.decoder.weight is model.embedding.weight


def test_bad_specs():
    assert parse_units("0:5, 1:12") == [(0, 5), (1, 12)]
    for spec in ("", "0", "a:b", "0:1:2", "-1:2"):
        with pytest.raises(CharlstmError, match="--ablate takes LAYER:UNIT"):
            parse_units(spec)


def test_eval_and_sample_take_ablate(trained_run):
    corpus = str(trained_run.parent / "corpus.txt")
    plain = json.loads(CliRunner().invoke(app, ["eval", "-c", str(trained_run), "--text",
                                                corpus, "--json"]).output)  # fmt: skip
    result = CliRunner().invoke(app, ["eval", "-c", str(trained_run), "--text", corpus,
                                      "--json", "--ablate", "0:1,1:2"])  # fmt: skip
    numbers = json.loads(result.output)
    assert numbers["loss"] == plain["loss"] and numbers["ablated_units"] == [[0, 1], [1, 2]]
    model, saved = load_for_inference(trained_run)
    vocab = saved.vocab
    ids = vocab.encode((trained_run.parent / "corpus.txt").read_text())
    exact = per_char_loss(ablated(model, [(0, 1), (1, 2)]), ids).mean()
    assert numbers["ablated_loss"] == pytest.approx(exact, rel=2e-3)  # 16 streams vs one
    text = CliRunner().invoke(app, ["eval", "-c", str(trained_run), "--text", corpus,
                                    "--ablate", "0:1"]).output  # fmt: skip
    assert "with 0:1 ablated: loss" in text
    out = CliRunner().invoke(app, ["sample", "-c", str(trained_run), "--ablate", "1:3",
                                   "--prime", "the", "--length", "40", "--seed", "3"])  # fmt: skip
    assert out.exit_code == 0 and out.output.startswith("the")
    bad = CliRunner().invoke(app, ["eval", "-c", str(trained_run), "--text", corpus,
                                   "--ablate", "9:0"])  # fmt: skip
    assert bad.exit_code == 1 and "this model has layers 0-1" in bad.output


@pytest.mark.slow
def test_ablating_the_counting_unit_hurts_the_counter_task_most(task_runs):
    from charlstm.data.tasks import corpus_text
    from charlstm.inspect.activations import rank_units, record

    model, saved = load_for_inference(task_runs["counter"])  # configs/counter.yaml, trained
    vocab = saved.vocab
    text = corpus_text("counter", 60, seed=99)
    # the count: a's read so far on the line, minus b's written
    count, level = np.zeros(len(text), dtype=np.float32), 0
    for t, ch in enumerate(text):
        level = 0 if ch == "\n" else level + (ch == "a") - (ch == "b")
        count[t] = level
    acts = record(model, vocab, text)
    counting = rank_units(acts, {"count": count}, top=1)["count"][0]
    ids = vocab.encode(text)
    base = per_char_loss(model, ids).mean()
    rise = {u: per_char_loss(ablated(model, [(0, u)]), ids).mean() - base for u in range(10)}
    others = sorted(v for u, v in rise.items() if u != counting.unit)
    shown = rise[counting.unit]
    print(f"\ncounting unit {counting.unit} (r = {counting.r:+.2f}): loss +{shown:.3f}; "
          f"median of the others +{np.median(others):.3f}")  # fmt: skip
    assert rise[counting.unit] > np.median(others)
