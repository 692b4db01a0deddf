"""A run that watches itself: roll-backs, early stopping, numbered checkpoints and the
end-of-run diagnosis (charlstm/training/guard.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import quiet_console, small_config

from charlstm.checkpoint import read_checkpoint
from charlstm.config import Config
from charlstm.errors import CharlstmError
from charlstm.training.guard import diagnose, stale_validations
from charlstm.training.trainer import Trainer


def _trainer(cfg, tmp_path):
    return Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True)


def _spy_on_roll_backs(trainer) -> list[dict]:
    """Record, at each roll-back, the snapshot gone back to and the weights after it."""
    seen, real = [], trainer.guard._roll_back

    def spy(step, loss, skipped):
        message = real(step, loss, skipped)
        weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        seen.append({"step": step, "good": trainer.guard.good, "weights": weights})
        return message

    trainer.guard._roll_back = spy
    return seen


def test_a_loss_spike_is_rolled_back_to_good_weights_at_half_the_rate(corpus_file, tmp_path):
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=40", "log.log_every=5")
    trainer = _trainer(cfg, tmp_path)
    seen = _spy_on_roll_backs(trainer)
    take_step = trainer.train_step

    def step_with_a_blow_up():
        if trainer.step == 22:  # what a bad update does: the weights jump far away
            with torch.no_grad():
                trainer.model.decoder.weight.mul_(40)
        return take_step()

    trainer.train_step = step_with_a_blow_up
    summary = trainer.run()
    assert len(seen) == 1 and seen[0]["step"] == 25
    good = seen[0]["good"]
    assert good.step <= 20  # from before the blow-up, and confirmed by a healthy window
    for name, value in good.model.items():
        assert torch.equal(seen[0]["weights"][name], value), name
    assert summary.steps == 40  # and the run went on to its end
    assert trainer.guard.lr_scale == 0.5
    saved = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (saved.rollbacks, saved.lr_scale) == (1, 0.5)
    assert "rolled back to the weights of step" in (tmp_path / "log.txt").read_text()
    lr = trainer.optimizer.param_groups[0]["lr"]
    from charlstm.training.optim import lr_at

    assert lr == pytest.approx(lr_at(39, cfg.train, None) * 0.5)


def test_non_finite_updates_are_skipped_then_rolled_back_and_repeats_stop(corpus_file, tmp_path):
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=30")
    trainer = _trainer(cfg, tmp_path)
    poisoned = {5, 6, 12}
    weight = trainer.model.decoder.weight
    weight.register_hook(lambda g: g * float("nan") if trainer.step in poisoned else g)
    trainer.run()
    assert trainer.skipped_updates == 3
    assert trainer.guard.rollbacks == 2  # the windows ending at steps 10 and 20
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())

    cfg2 = small_config(corpus_file, tmp_path / "run2", "train.max_rollbacks=2")
    trainer2 = _trainer(cfg2, tmp_path)
    trainer2.model.decoder.weight.register_hook(lambda g: g * float("nan"))
    # before its first checkpoint (step 100) it says nothing is saved, as is the case
    stopped = r"blew up again at step 30 .*after 2 roll-backs.*\(nothing saved yet\)"
    with pytest.raises(CharlstmError, match=stopped):
        trainer2.run()
    assert not list((tmp_path / "run2" / "checkpoints").glob("*.pt"))


def _diverging_corpus(tmp_path):
    """Training text where 'a' is always followed by 'b', held-out text where it is
    followed by 'c': the better the model learns the one, the worse it scores the other."""
    path = tmp_path / "diverging.txt"
    path.write_text("abcab cabca bcabc " * 900 + "acbac bacba cbacb " * 100, encoding="utf-8")
    return path


def test_patience_ends_a_run_whose_validation_rises_and_says_it_memorises(tmp_path):
    cfg = small_config(
        _diverging_corpus(tmp_path),
        tmp_path / "run",
        "train.max_steps=1000",
        "train.eval_every=10",
        "train.patience=3",
    )
    summary = _trainer(cfg, tmp_path).run()
    assert summary.stopped_early and summary.steps < 1000
    saved = read_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    assert stale_validations(saved.history) == 0
    last = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert stale_validations(last.history) == 3
    assert last.step == summary.steps == saved.step + 30
    assert summary.diagnosis.startswith("memorising:")
    assert f"best.pt is from step {saved.step}" in summary.diagnosis
    log = (tmp_path / "log.txt").read_text()
    assert "stopped early: 3 validation(s) in a row" in log and "memorising:" in log


def test_keep_checkpoints_keeps_the_last_k_named_by_step_and_loss(corpus_file, tmp_path):
    from typer.testing import CliRunner

    from charlstm.cli import app

    run = tmp_path / "run"
    cfg = small_config(
        corpus_file, run, "train.max_steps=50", "train.eval_every=10", "train.keep_checkpoints=2"
    )
    _trainer(cfg, tmp_path).run()
    kept = sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))
    history = read_checkpoint(run / "checkpoints" / "last.pt").history
    assert [int(h[0]) for h in history] == [10, 20, 30, 40, 50]
    assert kept == [f"step-{s:06d}-val-{history[i][2]:.4f}.pt" for i, s in ((3, 40), (4, 50))]
    result = CliRunner().invoke(
        app, ["sample", "--checkpoint", str(run / "checkpoints" / kept[0]), "--length", "20"]
    )
    assert result.exit_code == 0, result.output
    assert read_checkpoint(run / "checkpoints" / kept[0]).step == 40


def test_the_diagnosis_names_what_happened_with_its_numbers():
    cfg = Config()
    assert diagnose([[100, 2.0, 2.1]], cfg).startswith("one validation only")
    memorising = diagnose([[100, 2.0, 1.9], [200, 1.5, 1.7], [300, 1.0, 1.8]], cfg)
    assert memorising.startswith("memorising: validation rose from 1.700 (step 200) to 1.800")
    assert "best.pt is from step 200" in memorising and "model.dropout=0.2" in memorising
    unstable = diagnose([[100, 2.0, 1.9], [200, 2.2, 2.3]], cfg)
    assert unstable.startswith("unstable:") and "train.lr=0.001" in unstable
    learning = diagnose([[100, 2.0, 2.0], [200, 1.8, 1.9]], cfg)
    assert learning.startswith("still learning: validation fell by 0.100 in the last 100")
    # The advice is a command that extends this run (the default config: 2000 steps).
    assert "charlstm train --resume runs/default --set train.max_steps=4000" in learning
    timed = Config.from_dict({}, ["train.max_seconds=60", "train.max_steps=null"])
    assert "--resume runs/default --set train.max_seconds=120)" in diagnose(
        [[100, 2.0, 2.0], [200, 1.8, 1.9]], timed
    )
    converged = diagnose([[100, 2.0, 2.0], [200, 1.8, 1.702], [300, 1.79, 1.698]], cfg)
    assert converged.startswith("converged: validation moved by 0.004")


def test_tensorboard_holds_the_diagnosis_and_the_roll_back_count(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(trained_run), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    assert "diagnosis/text_summary" in acc.Tags()["tensors"]
    text = acc.Tensors("diagnosis/text_summary")[-1].tensor_proto.string_val[0].decode()
    assert text.startswith(("still learning", "converged", "memorising", "unstable"))
    assert [e.value for e in acc.Scalars("train/rollbacks")] == [0.0] * 30


@pytest.mark.parametrize(
    ("key", "value"),
    [("train.patience", 0), ("train.keep_checkpoints", -1), ("train.spike_factor", 0.5),
     ("train.max_rollbacks", 0)],
)  # fmt: skip
def test_bad_watch_settings_are_one_line(key, value):
    from charlstm.errors import ConfigError

    with pytest.raises(ConfigError, match=f"config: {key} must be"):
        Config.from_dict({}, [f"{key}={value}"])


def test_a_checkpoint_from_before_keeps_loading(tmp_path):
    from pathlib import Path

    saved = read_checkpoint(Path(__file__).parent / "fixtures" / "v1-lstm-ema.pt")
    assert saved.history == [] and saved.lr_scale == 1.0 and saved.rollbacks == 0
    assert math.isfinite(saved.config.train.spike_factor)


def test_the_diagnosis_judges_over_a_whole_interval_not_the_last_few_steps():
    history = [[100, 2.0, 2.00], [200, 1.9, 1.90], [300, 1.8, 1.80], [309, 1.8, 1.799]]
    assert diagnose(history, Config()).startswith(
        "still learning: validation fell by 0.101 in the last 109 steps"
    )
