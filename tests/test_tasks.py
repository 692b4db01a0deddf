import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm.checkpoint import load_for_inference
from charlstm.cli import app
from charlstm.config import DataConfig, load_config
from charlstm.data.corpus import load_corpus
from charlstm.data.tasks import corpus_text, examples
from charlstm.errors import CharlstmError
from charlstm.evaluate import score_task
from charlstm.training.trainer import Trainer
from tests.conftest import quiet_console

ROOT = Path(__file__).parent.parent


def test_every_language_follows_its_rule():
    for e in examples("counter", 200, seed=1):
        assert e.line == "a" * e.n + "X" + "b" * e.n
    for e in examples("selective-counter", 200, seed=1):
        body, _, tail = e.line.partition("Y")
        assert set(body) <= {"a", "X"} and body.count("a") == e.n and tail == "b" * e.n
        assert e.given.endswith("Y") and body[0] == "a"
    for e in examples("state", 200, seed=1):
        assert (
            e.line[0] in "AB"
            and e.line[1:-2] == "x" * e.n
            and e.line[-2:] == "Y" + e.line[0].lower()
        )
    for e in examples("copy", 200, seed=1):
        text, _, again = e.line.partition("X")
        assert text == again and set(text) <= set("abc") and len(text) == e.n


def test_seeded_ranges_and_fresh_test_sets():
    assert corpus_text("copy", 50, seed=3) == corpus_text("copy", 50, seed=3)
    assert corpus_text("copy", 50, seed=3) != corpus_text("copy", 50, seed=4)
    ns = {e.n for e in examples("counter", 500, seed=0, n_min=11, n_max=20)}
    assert ns == set(range(11, 21))
    with pytest.raises(CharlstmError, match="unknown task 'count'"):
        examples("count", 5, 0)
    with pytest.raises(CharlstmError, match="1 <= n-min <= n-max"):
        examples("counter", 5, 0, n_min=5, n_max=2)


def test_task_corpus_loads_without_files():
    c = load_corpus(DataConfig(path="task:counter", task_count=100))
    assert c.vocab.decode(c.ids).splitlines()[:3] == [e.line for e in examples("counter", 3, 0)]
    assert {chr(cp) for cp in c.vocab.code_points} == {"a", "X", "b", "\n"}


def test_an_untrained_model_fails_the_score(tmp_path):
    cfg = load_config(
        ROOT / "configs/counter.yaml", [f"train.out_dir={tmp_path}", "train.max_steps=1"]
    )
    Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True).run()
    model, saved = load_for_inference(tmp_path)
    vocab = saved.vocab
    assert score_task(model, vocab, "counter", count=50).accuracy < 0.5


def test_tasks_cli(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "tasks",
            "generate",
            "state",
            "--out",
            str(tmp_path / "s.txt"),
            "--count",
            "7",
            "--seed",
            "2",
        ],
    )
    assert result.exit_code == 0
    assert (tmp_path / "s.txt").read_text() == corpus_text("state", 7, 2)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["counter", "state"])
def test_tiny_lstm_learns_the_task_within_two_minutes(task, task_runs):
    """The acceptance line: a 1x10 LSTM, at most two CPU minutes, >= 99% exact on N <= 10."""
    cfg = load_config(ROOT / f"configs/{task}.yaml")
    assert (
        cfg.model.hidden_size == 10 and cfg.model.num_layers == 1 and cfg.train.max_seconds <= 120
    )
    result = CliRunner().invoke(app, ["eval", "-c", str(task_runs[task]), "--task", task, "--json"])
    assert result.exit_code == 0, result.output
    score = json.loads(result.output)
    print(f"\n{task}: {score}")
    assert score["accuracy"] >= 0.99
