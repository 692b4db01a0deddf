"""Training for a time budget: the schedule fits max_seconds on this machine, ends on
time at the rate's floor, and is recorded so a resumed run follows it exactly."""

import math
import signal

import pytest
import torch

from charlstm.checkpoint import Checkpoint, load_checkpoint
from charlstm.config import Config, TrainConfig
from charlstm.training.budget import Budget, fits_budget
from charlstm.training.optim import lr_at
from charlstm.training.trainer import Trainer
from tests.conftest import make_text, quiet_console, scalars, small_config
from tests.test_reliability import start_training, wait_for


@pytest.fixture
def long_corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(lines=4000), encoding="utf-8")
    return path


def budget_config(corpus, out, seconds, *extra):
    return small_config(corpus, out, "train.max_steps=null", f"train.max_seconds={seconds}",
                        "train.warmup_steps=10", "train.eval_every=150", *extra)  # fmt: skip


def logged_lr(run_dir):
    return scalars(run_dir, "train/lr")


def on_the_tests_clock(monkeypatch, step_s: float) -> None:
    """Training time read off a clock of the test's own: each reading 1 ms, each step
    `step_s` more; so no verdict depends on how busy the machine is."""
    now = [0.0]

    def clock() -> float:
        now[0] += 0.001
        return now[0]

    def slow_step(self):
        now[0] += step_s
        return real_step(self)

    real_step = Trainer.train_step
    monkeypatch.setattr(Trainer, "clock", staticmethod(clock))
    monkeypatch.setattr(Trainer, "train_step", slow_step)


@pytest.mark.parametrize("seconds", [6.0, 10.0])
def test_a_budget_run_ends_on_time_with_the_rate_at_its_floor(
    long_corpus, tmp_path, seconds, monkeypatch
):
    on_the_tests_clock(monkeypatch, step_s=0.02)
    cfg = budget_config(long_corpus, tmp_path / "run", seconds, "log.log_every=1")
    trainer = Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True)
    summary = trainer.run()
    print(f"\nbudget {seconds}s: trained {summary.seconds:.2f}s, {summary.steps} steps, "
          f"fitted {trainer.budget_steps}")  # fmt: skip
    # On time: it uses the budget (the fit leaves it within 10%), and no step starts after
    # it; what follows the last step (the final validation, cut at the deadline, and the
    # save) stays inside it too.
    assert 0.9 * seconds <= summary.seconds <= seconds and summary.last_step_started < seconds
    floor = cfg.train.lr * cfg.train.final_lr_fraction
    last_step, last_lr = logged_lr(tmp_path / "run")[-1]
    fitted = trainer.budget_steps
    # It ends at the fitted count, with the rate at its floor.
    assert last_step == summary.steps == fitted
    assert summary.ended_by == f"the {fitted:,} steps train.max_seconds={seconds:g} allows here"
    assert last_lr == pytest.approx(floor, rel=0.01)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["schedule_steps"] == (
        fitted
    )


@pytest.mark.slow  # seconds of real training or scoring: in `make test`
def test_a_resumed_budget_run_follows_its_recorded_schedule(long_corpus, tmp_path):
    out = tmp_path / "run"
    # a budget far past the first checkpoint, however busy the machine: it is stopped there
    proc = start_training(long_corpus, out, "train.max_steps=null", "train.max_seconds=300",
                          "train.checkpoint_every=40", "train.warmup_steps=10")  # fmt: skip
    wait_for(out / "checkpoints" / "last.pt", proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    payload = load_checkpoint(out / "checkpoints" / "last.pt")
    recorded, step = payload["schedule_steps"], payload["step"]
    assert recorded is not None and recorded > step
    cfg = Config.from_dict(payload["config"])  # the same run, resumed
    trainer = Trainer(
        cfg,
        resume=Checkpoint.from_payload(payload),
        console=quiet_console(tmp_path / "l"),
    )
    assert trainer.budget_steps == recorded  # no new fit at the start of a resumed run
    for _ in range(5):
        expected = lr_at(trainer.step, cfg.train, recorded)
        trainer.train_step()
        assert trainer.optimizer.param_groups[0]["lr"] == expected
    assert trainer.budget_steps == recorded


def test_the_rate_is_a_pure_function_of_step_and_count():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=None, max_seconds=60)
    assert fits_budget(cfg) and not fits_budget(TrainConfig(max_seconds=60, decay_steps=500))
    assert lr_at(5, cfg, 1000) == lr_at(5, cfg, 50) == pytest.approx(0.6)  # warm-up
    assert lr_at(505, cfg, 1000) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(999, cfg, 1000) == pytest.approx(0.1, rel=1e-3)
    assert lr_at(300, cfg, None) == 1.0  # not fitted yet and no max_steps: constant


def test_the_fit_leaves_room_for_validations():
    cfg = TrainConfig(max_steps=None, max_seconds=100, eval_every=100, warmup_steps=0)
    budget = Budget(cfg, val_chars=10_000, chars_per_step=100, recorded=None, refit=False)
    for step in range(1, 40):  # 10 steps per second
        budget.after_step(step, elapsed=step / 10)
    # at 14 s, after one 10 s validation: 74 s left once the final validation and 2% of
    # the budget are set aside, and every 100 steps (10 s) cost another 10 s of
    # validation: 370 steps
    budget.after_validation(10.0)
    budget.refit(40, elapsed=14.0)
    assert 40 + 0.95 * 370 < budget.total <= 40 + 370


def test_max_steps_alone_behaves_as_before(corpus_file, tmp_path):
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=30")
    trainer = Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True)
    assert trainer.budget is None
    summary = trainer.run()
    assert summary.steps == 30 and summary.ended_by == "train.max_steps=30 reached"
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["schedule_steps"] is None
    assert torch.isfinite(torch.tensor(trainer.last_val_loss))


def test_the_deadline_holds_for_the_steps_and_the_last_validation(
    long_corpus, tmp_path, monkeypatch
):
    """train.max_seconds measured on the test's own clock (a step takes 50 ms on it, a
    reading 1 ms), so no verdict depends on how busy the machine is: the last step ends
    before the deadline and the next would not have (no step starts that the steps
    before say would end past it), and with less time left than a validation's first
    window takes, the last validation is left out rather than run past the deadline (a
    run that has validated before: one that has not validates anyway, below)."""
    on_the_tests_clock(monkeypatch, step_s=0.05)
    cfg = small_config(long_corpus, tmp_path / "run", "train.max_steps=null",
                       "train.max_seconds=1", "train.decay_steps=100", "train.eval_every=3",
                       "train.eval_streams=1", "train.eval_chars=null")  # fmt: skip
    log = tmp_path / "log"
    summary = Trainer(cfg, console=quiet_console(log), quiet=True).run()
    readings = 0.01
    last_ended = summary.last_step_started + 0.05
    assert last_ended <= 1.0 + readings < last_ended + 0.05 + readings
    assert summary.steps >= 8  # each pass of the loop: a step and about 50 readings
    assert summary.seconds <= 1.0 + readings  # the end of the run, the last save included
    assert "no time left for a last validation" in log.read_text(encoding="utf-8")


def test_a_run_that_never_validated_ends_with_a_best_checkpoint(long_corpus, tmp_path,
                                                                monkeypatch):  # fmt: skip
    """However the machine's load stretched its steps, a run ends with a best.pt: its
    last validation runs even with no time left when it would be its first."""
    on_the_tests_clock(monkeypatch, step_s=0.05)
    cfg = small_config(long_corpus, tmp_path / "run", "train.max_steps=null",
                       "train.max_seconds=1", "train.decay_steps=100", "train.eval_every=1000",
                       "train.eval_streams=1", "train.eval_chars=null")  # fmt: skip
    summary = Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True).run()
    assert math.isfinite(summary.best_val_loss)
    assert (tmp_path / "run" / "checkpoints" / "best.pt").is_file()


@pytest.mark.parametrize(
    "first, then",
    [
        # The budget ended the run: a larger one continues it.
        (("train.max_seconds=3",), ("train.max_seconds=6",)),
        # max_steps capped the fitted count: a larger cap continues it.
        (
            ("train.max_seconds=60", "train.max_steps=60"),
            ("train.max_seconds=60", "train.max_steps=90"),
        ),
    ],
)
def test_a_finished_budget_run_extended_on_resume_trains_on(
    long_corpus, tmp_path, monkeypatch, first, then
):
    on_the_tests_clock(monkeypatch, step_s=0.02)
    out = tmp_path / "run"
    cfg = budget_config(long_corpus, out, 60, *first)
    ended = Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True).run()
    saved = Checkpoint.from_payload(load_checkpoint(out / "checkpoints" / "last.pt"))
    assert saved.schedule_steps == ended.steps  # the run ended at its own count
    extended = budget_config(long_corpus, out, 60, *then)
    trainer = Trainer(extended, resume=saved, console=quiet_console(tmp_path / "l"), quiet=True)
    summary = trainer.run()
    assert summary.steps > ended.steps + 25, (ended.steps, summary.steps)
    assert trainer.budget_steps == summary.steps  # refitted to the new limits, and met
    # Nothing changed: a finished run stays finished.
    again = Trainer(extended, resume=Checkpoint.from_payload(
        load_checkpoint(out / "checkpoints" / "last.pt")), console=quiet_console(tmp_path / "m"),
        quiet=True).run()  # fmt: skip
    assert again.steps == summary.steps


def test_a_cut_validation_is_never_best_against_full_ones(corpus_file, tmp_path, monkeypatch):
    """The final validation cut at the deadline scores fewer characters: even a lower
    loss there does not replace best.pt, which a full validation picked."""
    from dataclasses import replace as changed

    from charlstm.training import data as trainer_module

    real = trainer_module.evaluate_ids

    calls = []

    def cut_at_the_end(model, ids, streams, stop_when=None):
        result = real(model, ids, streams=streams, stop_when=stop_when)
        calls.append(stop_when)
        if len(calls) < 3:  # steps 10 and 20 scored whole; the last one (25) cut
            return result
        return changed(result, loss=result.loss / 10, chars=512, cut=True)  # "better"

    monkeypatch.setattr(trainer_module, "evaluate_ids", cut_at_the_end)
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=25", "train.eval_every=10",
                       "train.max_seconds=600", "train.decay_steps=25")  # fmt: skip
    log = tmp_path / "log"
    summary = Trainer(cfg, console=quiet_console(log), quiet=True).run()
    final = [line for line in log.read_text().splitlines() if "val loss" in line][-1]
    assert "(cut at train.max_seconds)" in final and "best" not in final
    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert best["step"] == 20 and summary.best_val_loss == best["best_val_loss"]
