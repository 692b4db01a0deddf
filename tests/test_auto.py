"""train.auto and `charlstm train PATH --time T`: the choice, its record, and that what
the user sets wins (charlstm/training/auto.py)."""

from __future__ import annotations

import pytest
import torch
import yaml
from conftest import quiet_console, small_config
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.config import Config
from charlstm.memory import parameter_count
from charlstm.training import auto
from charlstm.training.trainer import Trainer


def _facts(chars, seconds, documents=None, p95=None, vocab=65):
    return auto.Facts(chars, vocab, documents, p95, torch.device("cpu"), 2, "fp32", seconds)


def _timer(facts, model, batch, bptt, optimizer="adamw", muon_cost=1.0):
    """A device whose step costs 20 ms plus 1 ms per 10,000 parameters, and a Muon step
    `muon_cost` times that."""
    return (0.02 + parameter_count(facts.vocab, model) / 1e7) * (
        muon_cost if optimizer == "muon" else 1.0
    )


def _seen_per_parameter(choice, facts, layers, width):
    s = choice.settings
    model = auto.ModelConfig(cell=s["model.cell"], embedding_dim=s["model.embedding_dim"],
                             hidden_size=width, num_layers=layers)  # fmt: skip
    params = parameter_count(facts.vocab, model)
    training = facts.seconds * (1 - auto.VALIDATION_SHARE - 0.03)
    seen = training / _timer(facts, model, 0, 0) * s["train.batch_size"] * s["train.bptt"]
    return seen / params


def test_the_largest_model_the_budget_can_feed_is_chosen():
    facts = _facts(1_000_000, 180.0)
    choice = auto.choose(facts, timer=_timer)
    s = choice.settings
    assert set(s) == set(auto.CHOSEN_KEYS)
    pick = auto.SHAPES.index((s["model.num_layers"], s["model.hidden_size"]))
    assert _seen_per_parameter(choice, facts, *auto.SHAPES[pick]) >= auto.CHARS_PER_PARAMETER
    bigger = auto.SHAPES[pick + 1]
    assert _seen_per_parameter(choice, facts, *bigger) < auto.CHARS_PER_PARAMETER
    assert s["model.cell"] == "lstm" and s["train.max_steps"] is None
    # more time: a larger model; one text of many passes: regularised
    longer = auto.choose(_facts(1_000_000, 3600.0), timer=_timer).settings

    def size(settings):
        layers, width = settings["model.num_layers"], settings["model.hidden_size"]
        return auto.SHAPES.index((layers, width))

    assert size(longer) > size(s)
    assert longer["model.dropout"] > 0 and longer["train.weight_decay"] == 0.3
    assert choice.reason.startswith("1 M chars, 65 symbols, 180 s on CPU (2 threads): ")


def test_the_choice_is_made_around_the_shape_the_user_fixed():
    timed = []

    def timer(facts, model, batch, bptt, optimizer="adamw"):
        timed.append((model.num_layers, model.hidden_size, model.cell, batch, optimizer))
        return _timer(facts, model, batch, bptt, optimizer)

    fixed = {"model.num_layers": 1, "model.hidden_size": 32, "model.cell": "lstm",
             "train.batch_size": 8}  # fmt: skip
    facts = auto.Facts(1_000_000, 65, None, None, torch.device("cpu"), 2, "fp32", 180.0,
                       given=fixed)  # fmt: skip
    s = auto.choose(facts, timer=timer).settings
    # what will be trained is what is timed, once with each optimizer
    assert timed == [(1, 32, "lstm", 8, "adamw"), (1, 32, "lstm", 8, "muon")]
    steps = int(180.0 * (1 - auto.VALIDATION_SHARE - 0.03) / _timer(facts, auto.ModelConfig(
        cell="lstm", embedding_dim=64, hidden_size=32, num_layers=1), 8, 64, "muon"))  # fmt: skip
    assert s["train.eval_every"] == max(10, steps // auto.VALIDATIONS)
    # one dimension fixed: the ladder runs along the other
    timed.clear()
    three = auto.Facts(1_000_000, 65, None, None, torch.device("cpu"), 2, "fp32", 180.0,
                       given={"model.num_layers": 3})  # fmt: skip
    assert auto.choose(three, timer=timer).settings["model.num_layers"] == 3
    assert {layers for layers, *_ in timed} == {3}


def test_muon_is_chosen_where_its_step_is_cheap_enough_and_a_given_optimizer_wins():
    def costing(muon_cost):
        return lambda *args: _timer(*args, muon_cost=muon_cost)

    facts = _facts(1_000_000, 180.0)
    cheap = auto.choose(facts, timer=costing(1.1))
    dear = auto.choose(facts, timer=costing(auto.MUON_MAX_COST + 0.1))
    assert cheap.settings["train.optimizer"] == "muon"
    assert "Muon: its step costs 1.10x AdamW's here" in cheap.reason
    assert dear.settings["train.optimizer"] == "adamw"
    assert f"AdamW: a Muon step costs {auto.MUON_MAX_COST + 0.1:.2f}x here" in dear.reason
    given = auto.Facts(1_000_000, 65, None, None, torch.device("cpu"), 2, "fp32", 180.0,
                       given={"train.optimizer": "adamw", "model.dropout": 0.25})  # fmt: skip
    kept = auto.choose(given, timer=costing(1.0))
    assert kept.settings["train.optimizer"] == "adamw" and "adamw as given" in kept.reason
    assert "dropout 0.25," in kept.reason  # the line says what will be trained


def test_a_small_corpus_is_read_many_times_regularised_and_documents_get_their_window():
    tiny = auto.choose(_facts(30_000, 120.0), timer=_timer).settings
    large = auto.choose(_facts(10**9, 120.0), timer=_timer).settings

    def size(settings):
        return auto.SHAPES.index((settings["model.num_layers"], settings["model.hidden_size"]))

    assert size(tiny) > size(large)  # read many times: memorising binds, not time
    assert tiny["model.dropout"] == 0.3 and tiny["train.patience"] == auto.PATIENCE
    facts = auto.Facts(200_000, 65, 30_000, 11, torch.device("cpu"), 2, "fp32", 240.0, 8.5)
    names = auto.choose(facts, timer=_timer).settings
    assert names["model.cell"] == "lstm" and names["train.bptt"] == 16
    assert names["train.batch_size"] == 32 and names["train.lr"] == 3e-3
    assert names["train.weight_decay"] == 0.01  # short documents: early stopping guards
    # without a budget: sized for PLANNED_SECONDS, the cosine over those steps, patience ends it
    endless = auto.choose(_facts(1_000_000, None), timer=_timer).settings
    assert endless["train.decay_steps"] > 0 and endless["train.patience"] == auto.PATIENCE


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
def test_auto_records_its_choice_and_every_explicit_key_wins(corpus_file, tmp_path):
    cfg = small_config(
        corpus_file, tmp_path / "run", "train.auto=true", "train.max_seconds=4",
        "model.hidden_size=48",
    )  # fmt: skip
    cfg = Config.from_dict({}, [f"{k}={v}" for k, v in _given(cfg).items()])
    trainer = Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True)
    summary = trainer.run()
    written = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert written["model"]["hidden_size"] == 48  # given
    assert written["model"]["cell"] == "lstm" and written["train"]["patience"] == 3  # chosen
    assert written["train"]["max_steps"] is None and written["train"]["max_seconds"] == 4
    log = " ".join((tmp_path / "log.txt").read_text().split())  # as one line, unwrapped
    assert "auto: " in log and " on CPU (" in log and " passes; " in log
    assert " probes in " in log and "; corpus read in " in log  # its own time, stated
    assert summary.seconds < 6


def _given(cfg: Config) -> dict:
    """small_config's keys less those auto is to choose (and the step limit)."""
    flat = {f"{s}.{k}": v for s, values in cfg.to_dict().items() for k, v in values.items()}
    keep = {"data.path", "data.val_fraction", "train.device", "train.out_dir", "train.auto",
            "train.max_seconds", "model.hidden_size", "log.log_every"}  # fmt: skip
    return {k: ("null" if v is None else v) for k, v in flat.items() if k in keep}


def test_an_auto_run_resumes_exactly(corpus_file, tmp_path):
    given = ["train.auto=true", "train.max_steps=20", "train.max_seconds=null",
             "model.hidden_size=32", "model.num_layers=1", "train.batch_size=8", "train.bptt=16",
             "train.eval_every=10", "train.checkpoint_every=10"]  # fmt: skip
    cfg = Config.from_dict({}, [f"data.path={corpus_file}", "train.device=cpu",
                                f"train.out_dir={tmp_path / 'a'}", *given])  # fmt: skip
    Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True).run()
    runner = CliRunner()
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "a"), "-q",
                                  "--set", "train.max_steps=40"])  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert "auto:" not in resumed.output  # the choice stays the recorded one
    whole = runner.invoke(app, ["train", "--config", str(tmp_path / "a" / "config.yaml"), "-q",
                                "--set", "train.max_steps=40",
                                "--set", f"train.out_dir={tmp_path / 'b'}"])  # fmt: skip
    assert whole.exit_code == 0, whole.output
    from charlstm.checkpoint import read_checkpoint

    a = read_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt").model
    b = read_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt").model
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
def test_train_path_time_is_the_newcomers_form(corpus_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", str(corpus_file), "--time", "4s", "-q",
                                      "--set", "train.device=cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "auto: " in result.output
    assert (tmp_path / "runs" / "corpus" / "checkpoints" / "best.pt").is_file()
    written = yaml.safe_load((tmp_path / "runs" / "corpus" / "config.yaml").read_text())
    assert written["train"]["auto"] is True and written["train"]["max_seconds"] == 4
    verdicts = ("still learning", "converged", "memorising", "unstable", "one validation")
    assert any(line.startswith(verdicts) for line in result.output.splitlines())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time", "10x"], "--time: '10x' is not a duration: write 90s, 10m, 1h or 1h30m"),
        (["--time", "0s"], "--time must be more than 0 s"),
        (["--resume", "runs/x"], "give a corpus to train on or --resume a run, not both"),
        (["--set", "train.init_from=runs/x"], "train.auto chooses a model, and a fine-tune"),
    ],
)
def test_newcomer_mistakes_are_one_line(corpus_file, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["train", str(corpus_file), *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_a_step_slowed_by_another_job_does_not_change_the_timed_step(monkeypatch):
    """Each step is timed on its own and the median taken: one step that another job
    held up for a second leaves the estimate at the others' time."""
    now, calls = [0.0], [0]

    def clock() -> float:  # 10 ms between readings, but one step takes a second
        calls[0] += 1
        now[0] += 1.0 if calls[0] == 4 else 0.01
        return now[0]

    monkeypatch.setattr(auto.time, "perf_counter", clock)
    shape = auto.ModelConfig(cell="gru", embedding_dim=8, hidden_size=16, num_layers=1)
    seconds = auto.seconds_per_step(_facts(10_000, 60), shape, batch=2, bptt=4)
    assert seconds == pytest.approx(0.01)
