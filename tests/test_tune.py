"""`charlstm tune`: the space, the study, pruning, best.yaml, and one study shared by
two processes through a journal file and through a real PostgreSQL
(charlstm/training/tune.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import quiet_console
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.config import Config, load_config
from charlstm.errors import ConfigError

optuna = pytest.importorskip("optuna", reason="charlstm tune needs Optuna (the tune extra)")

from charlstm.training import tune as tune_module  # noqa: E402
from charlstm.training.tune import TuneSettings, read_space, run_study  # noqa: E402


def _base(tmp_path: Path, corpus: Path) -> Path:
    """A base config that trains a small model in a few seconds."""
    path = tmp_path / "base.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"path": str(corpus), "val_fraction": 0.1},
                "model": {"embedding_dim": 16, "hidden_size": 48, "num_layers": 1},
                "train": {
                    "batch_size": 8,
                    "bptt": 32,
                    "warmup_steps": 5,
                    "device": "cpu",
                    "eval_chars": 2000,
                },
                "log": {"log_every": 5, "sample_length": 0},
            }  # fmt: skip
        )
    )
    return path


def _space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model.hiden_size: [32]", "(did you mean 'model.hidden_size'?)"),
        ("data.path: [a, b]", "data.path is not a key a trial may draw"),
        ("train.lr: {low: 0.1, high: 0.01}", "train.lr needs numbers low < high"),
        ("train.lr: {low: 0, high: 0.1, log: true}", "train.lr needs numbers low < high"),
        ("model.cell: {low: 1, high: 2}", "model.cell needs numbers low < high"),
        ("model.cell: []", "model.cell needs a non-empty list"),
        ("train.lr: 0.1", "train.lr must be a list of choices or {low, high, log}"),
        ("[1, 2]", "must map config keys to choices or ranges"),
    ],
)  # fmt: skip
def test_a_bad_space_is_one_line_naming_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as caught:
        read_space(_space(tmp_path, text))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_the_default_space_lies_around_the_start():
    start = Config.from_dict({}, ["model.hidden_size=256", "model.num_layers=2",
                                  "train.lr=0.01", "train.batch_size=64"])  # fmt: skip
    space = {d.key: d for d in read_space(None, start)}
    assert space["model.hidden_size"].choices == (192, 256, 320, 384)
    assert space["model.num_layers"].choices == (1, 2, 3)
    assert space["train.batch_size"].choices == (32, 64, 128)
    assert space["train.optimizer"].choices == ("adamw", "muon")
    lr = space["train.lr"]
    assert lr.log and lr.low == pytest.approx(0.01 / 3) and lr.high == pytest.approx(0.03)
    assert tune_module.base_params(start, list(space.values()))["model.hidden_size"] == 256


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--time", "10s", "--trial-time", "20s"], "--trial-time (20 s) is longer than --time"),
        (["--time", "soon"], "--time: 'soon' is not a duration"),
        (["--pruner", "coin"], "--pruner must be median, hyperband or none"),
        (["--trials", "0"], "--trials must be >= 1"),
        (["--start", "best"], "--start must be auto or base (got 'best')"),
        (["--seed", "-1"], "--seed must be a whole number"),
        (["--storage", "nosuch://x"], "--storage: cannot open the study there"),
        (["--space", "missing.yaml"], "cannot read it"),
    ],
)
def test_bad_tune_options_are_one_line_before_any_trial(corpus_file, tmp_path, args, message):
    base = _base(tmp_path, corpus_file)
    result = CliRunner().invoke(
        app, ["tune", "--config", str(base), "--out", str(tmp_path / "study"), *args]
    )
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not list((tmp_path / "study").glob("trial-*"))


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
def test_a_trial_behind_at_its_first_report_is_pruned_and_the_best_is_written(
    corpus_file, tmp_path
):
    settings = TuneSettings(
        config=_base(tmp_path, corpus_file), time="60s", trial_time="3s",
        space=_space(tmp_path, "train.lr: [0.01, 0.000001]"), out=tmp_path / "study",
        trials=2,
    )  # fmt: skip
    study = optuna.create_study(
        direction="minimize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1)
    )
    study.enqueue_trial({"train.lr": 0.01})
    study.enqueue_trial({"train.lr": 0.000001})  # barely moves: behind at once
    found, best = run_study(settings, quiet_console(tmp_path / "log.txt"), study)
    first, second = found.trials
    assert first.state == optuna.trial.TrialState.COMPLETE
    assert second.state == optuna.trial.TrialState.PRUNED
    assert list(second.intermediate_values) == [1]  # pruned at its first report
    cfg = load_config(best)  # ready for charlstm train --config
    assert cfg.train.lr == 0.01 and cfg.train.max_seconds == 3
    trial_run = tmp_path / "study" / "trial-0000"
    assert list(trial_run.glob("events.out.tfevents.*"))  # its TensorBoard run
    assert (trial_run / "checkpoints" / "best.pt").is_file()


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
def test_a_trial_that_cannot_run_fails_alone_and_best_yaml_follows_the_best(corpus_file, tmp_path):
    """A shape that cannot be allocated fails its trial (marked failed, one line), the
    study goes on, and best.yaml is written when a trial finishes better, not only at the
    end (a study stopped later keeps it)."""
    settings = TuneSettings(
        config=_base(tmp_path, corpus_file), time="60s", trial_time="2s",
        space=_space(tmp_path, "model.hidden_size: [48, 100000000000]"),
        out=tmp_path / "study", trials=3, pruner="none",
    )  # fmt: skip
    study = optuna.create_study(direction="minimize")
    for width in (48, 100000000000, 48):
        study.enqueue_trial({"model.hidden_size": width})
    written = []
    real_write = tune_module.write_best

    def watching(study, prepared):
        path = real_write(study, prepared)
        written.append(sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials))
        return path

    tune_module.write_best = watching
    try:
        found, best = run_study(settings, quiet_console(tmp_path / "log.txt"), study)
    finally:
        tune_module.write_best = real_write
    states = [t.state for t in found.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                      optuna.trial.TrialState.COMPLETE]  # fmt: skip
    assert "trial 1 failed: " in (tmp_path / "log.txt").read_text()
    assert written[0] == 1  # after the first finished trial, not only at the end
    assert load_config(best).model.hidden_size == 48


def _postgres_url() -> str | None:
    return os.environ.get("CHARLSTM_TEST_POSTGRES")


STORAGES = [
    pytest.param(None, id="journal-file"),
    pytest.param(
        "postgresql",
        id="postgresql",
        marks=pytest.mark.skipif(
            _postgres_url() is None,
            reason="no PostgreSQL: set CHARLSTM_TEST_POSTGRES=postgresql://USER:PASS@HOST/DB "
            "(.ci/run installs and starts one when it runs as root)",
        ),
    ),
]


@pytest.mark.slow
@pytest.mark.parametrize("storage", STORAGES)
def test_two_workers_share_one_study(corpus_file, tmp_path, storage):
    base = _base(tmp_path, corpus_file)
    name = f"shared-{uuid.uuid4().hex[:8]}"
    url = _postgres_url() if storage else None
    command = [sys.executable, "-m", "charlstm", "tune", "--config", str(base),
               "--time", "60s", "--trial-time", "3s", "--trials", "1", "--study", name,
               "--out", str(tmp_path / "study"), "--space",
               str(_space(tmp_path, "train.lr: {low: 0.001, high: 0.03, log: true}"))]  # fmt: skip
    if url:
        command += ["--storage", url]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True) for _ in range(2)]  # fmt: skip
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    if url:
        study = optuna.load_study(study_name=name, storage=url)
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        journal = JournalFileBackend(str(tmp_path / "study" / "journal.log"))
        study = optuna.load_study(study_name=name, storage=JournalStorage(journal))
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == [0, 1]  # distinct, and the two workers' counts add up
    assert sorted(p.name for p in (tmp_path / "study").glob("trial-????")) == [
        f"trial-{n:04d}" for n in range(2)
    ]
    written = list((tmp_path / "study").glob("*.yaml"))
    assert [p.name for p in written] == ["best.yaml"]  # one file, no leftovers
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value)
    assert load_config(written[0]).train.lr == pytest.approx(best.params["train.lr"])
    # one start for both (the first worker's, recorded in the study), whatever each timed
    start = dict(item.split("=", 1) for item in study.user_attrs["start"])
    configs = [t.user_attrs["config"] for t in study.trials]
    assert [c["train"]["optimizer"] for c in configs] == [start["train.optimizer"]] * 2
    assert [c["model"]["cell"] for c in configs] == [start["model.cell"]] * 2


@pytest.mark.slow
def test_ctrl_c_stops_a_study_in_one_line(corpus_file, tmp_path):
    import signal
    import time

    base = _base(tmp_path, corpus_file)
    command = [sys.executable, "-m", "charlstm", "tune", "--config", str(base), "--time", "60s",
               "--trial-time", "20s", "--out", str(tmp_path / "study")]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((tmp_path / "study").glob("trial-0000/checkpoints/last.pt")):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "stopped" in stderr


def test_without_optuna_tune_names_the_extra(monkeypatch, tmp_path, corpus_file):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    result = CliRunner().invoke(app, ["tune", "--config", str(_base(tmp_path, corpus_file))])
    assert result.exit_code == 1
    assert "charlstm tune needs Optuna: pip install 'charlstm[tune]'" in result.output


def test_a_study_starts_from_the_base_config(corpus_file, tmp_path):
    from charlstm.training.tune import base_params

    base = load_config(_base(tmp_path, corpus_file))
    space = read_space(
        _space(
            tmp_path,
            "model.hidden_size: [32, 48]\nmodel.cell: [gru]\n"
            "train.lr: {low: 0.001, high: 0.01, log: true}",
        )
    )
    assert base_params(base, space) == {"model.hidden_size": 48, "train.lr": 0.002}


def test_a_study_starts_from_the_autopilots_choice_for_the_keys_the_base_leaves_open(
    corpus_file, tmp_path
):
    base = _base(tmp_path, corpus_file)
    log = tmp_path / "log.txt"
    settings = TuneSettings(config=base, trial_time="30s", out=tmp_path / "a")
    prepared = tune_module.prepare(settings, quiet_console(log))
    chosen = dict(item.split("=", 1) for item in prepared.start)
    # what the base gives stays; what it leaves open comes from train.auto, for 30 s
    assert "model.hidden_size" not in chosen and "train.batch_size" not in chosen
    assert {"model.cell", "train.lr", "train.optimizer", "train.ema"} <= set(chosen)
    assert prepared.base.model.hidden_size == 48 and prepared.base.train.ema == 0.995
    assert "tune: trials start from train.auto's choice: " in log.read_text()
    as_given = tune_module.prepare(
        TuneSettings(config=base, trial_time="30s", out=tmp_path / "b", start="base"),
        quiet_console(log),
    )
    assert as_given.start == [] and as_given.base.train.ema is None
