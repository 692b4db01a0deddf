"""Steering: a unit held at a value at every step (--clamp), exactly, on every cell and
through every entry point."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

import charlstm
from charlstm.cli import app
from charlstm.config import ModelConfig
from charlstm.errors import SettingsError
from charlstm.generate.clamp import clamped
from charlstm.model import CharRNN

CELLS = {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell, "rnn": torch.nn.RNNCell}


def stepwise(net: CharRNN, ids: torch.Tensor, held: dict[tuple[int, int], float]):
    """The logits of `net` run one cell and one step at a time, each held unit's h
    replaced by its value before anyone reads it, the start state's too (the definition
    of a clamp)."""
    cfg = net.cfg
    cells = []
    for layer in range(cfg.num_layers):
        size = cfg.embedding_dim if layer == 0 else cfg.hidden_size
        cell = CELLS[cfg.cell](size, cfg.hidden_size)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).data = getattr(net.rnn, f"{name}_l{layer}").data
        cells.append(cell)

    def hold(h: torch.Tensor, layer: int) -> torch.Tensor:
        h = h.clone()
        for (at, unit), value in held.items():
            if at == layer:
                h[:, unit] = value
        return h

    zero = torch.zeros(ids.shape[0], cfg.hidden_size)
    states = [
        (hold(zero, layer), zero) if cfg.cell == "lstm" else hold(zero, layer)
        for layer in range(cfg.num_layers)
    ]
    logits = []
    for t in range(ids.shape[1]):
        x = net.embedding(ids[:, t])
        for layer, cell in enumerate(cells):
            state = cell(x, states[layer])
            h = hold(state[0] if isinstance(state, tuple) else state, layer)
            states[layer] = (h, state[1]) if isinstance(state, tuple) else h
            x = h
        logits.append(net.decoder(x))
    return torch.stack(logits, dim=1)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_a_clamp_is_the_unit_held_at_its_value_for_every_reader(cell):
    torch.manual_seed(0)
    net = CharRNN(11, ModelConfig(cell=cell, embedding_dim=6, hidden_size=8, num_layers=2)).eval()
    ids = torch.randint(0, 11, (3, 17))
    held = {(0, 2): 0.7, (1, 5): -0.9}
    with torch.no_grad():
        steered, _ = clamped(net, tuple((at, u, v) for (at, u), v in held.items()))(ids)
        reference = stepwise(net, ids, held)
        free, _ = net(ids)
    torch.testing.assert_close(steered, reference, atol=1e-5, rtol=1e-4)
    assert (steered - free).abs().max() > 1e-3  # and it changed something


def test_a_clamp_steers_every_entry_point_the_same(trained_run):
    model = charlstm.load(trained_run)
    free = model.sample("the ", length=200, seed=4)
    held = model.sample("the ", length=200, seed=4, clamp=["1:3=1", "1:7=-1"])
    assert held != free
    assert model.sample("the ", length=200, seed=4, clamp=[(1, 3, 1.0), (1, 7, -1.0)]) == held
    assert "".join(model.stream("the ", length=200, seed=4, clamp=["1:3=1", "1:7=-1"])) == held
    shown = CliRunner().invoke(app, ["sample", "-c", str(trained_run), "--prime", "the ",
                                     "--length", "200", "--seed", "4", "--clamp", "1:3=1",
                                     "--clamp", "1:7=-1"])  # fmt: skip
    assert shown.exit_code == 0 and shown.stdout == held + "\n"
    odds = CliRunner().invoke(app, ["suggest", "-c", str(trained_run), "--prime", "the ",
                                    "--json", "--clamp", "1:3=1"])  # fmt: skip
    plain = CliRunner().invoke(app, ["suggest", "-c", str(trained_run), "--prime", "the ",
                                     "--json"])  # fmt: skip
    assert odds.exit_code == plain.exit_code == 0 and odds.stdout != plain.stdout


@pytest.mark.parametrize(
    "clamp, message",
    [
        ("9:0=1", "--clamp 9:0: this model has layers 0-1 and units 0-"),
        ("0:9999=1", "--clamp 0:9999: this model has layers"),
        ("0:1", "--clamp takes LAYER:UNIT=VALUE"),
        ("0:1=high", "--clamp takes LAYER:UNIT=VALUE"),
        ("0:1=1e9", "layer and unit >= 0, a value in -100..100"),
    ],
)
def test_a_bad_clamp_is_one_line(trained_run, clamp, message):
    said = CliRunner().invoke(app, ["sample", "-c", str(trained_run), "--clamp", clamp])
    assert said.exit_code == 1 and message in said.stderr, said.output
    assert len(said.stderr.strip().splitlines()) == 1
    with pytest.raises(SettingsError):
        charlstm.load(trained_run).sample(clamp=[clamp])
