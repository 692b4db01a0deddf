import math
import subprocess
import sys

import pytest
import torch
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from charlstm.checkpoint import load_checkpoint
from charlstm.config import Config, TrainConfig, load_config
from charlstm.device import training_precision
from charlstm.errors import ConfigError
from charlstm.training.optim import lr_at
from charlstm.training.trainer import Trainer
from tests.conftest import quiet_console, scalars, small_config


def run(cfg, tmp_path, resume=None):
    trainer = Trainer(
        cfg, resume=resume, console=quiet_console(tmp_path / "console.txt"), quiet=True
    )
    trainer.run()
    return trainer


def test_schedule_is_warmup_then_cosine_to_floor():
    t = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, final_lr_fraction=0.1)
    assert lr_at(0, t) == pytest.approx(0.1)
    assert lr_at(9, t) == pytest.approx(1.0)
    assert lr_at(60, t) == pytest.approx(0.55)  # half-way down the cosine
    assert lr_at(110, t) == pytest.approx(0.1) and lr_at(500, t) == pytest.approx(0.1)
    assert lr_at(10_000, TrainConfig(lr=1.0, warmup_steps=10, max_steps=None)) == 1.0


def test_training_learns_far_below_uniform(trained_run):
    payload = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    vocab_size = len(payload["vocab"]["code_points"])
    assert payload["best_val_loss"] < 0.45 * math.log(vocab_size)
    val = scalars(trained_run, "val/loss")
    assert [s for s, _ in val] == [100, 200, 300]
    assert val[-1][1] < val[0][1]  # falling


def test_tensorboard_has_every_scalar_sample_and_hparams(trained_run):
    acc = EventAccumulator(str(trained_run), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in (
        "train/loss",
        "train/bpc",
        "val/loss",
        "val/bpc",
        "train/lr",
        "train/grad_norm",
        "train/chars_per_sec",
    ):
        assert tag in tags["scalars"], tag
    train_loss = acc.Scalars("train/loss")
    assert [e.step for e in train_loss] == list(range(10, 301, 10))
    bpc = acc.Scalars("train/bpc")
    assert bpc[-1].value == pytest.approx(train_loss[-1].value / math.log(2), rel=1e-5)
    samples = acc.Tensors("samples/text_summary")
    assert [e.step for e in samples] == [100, 200, 300]
    assert len(samples[-1].tensor_proto.string_val[0]) > 20
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    logged = start.session_start_info.hparams
    assert logged["train.max_steps"].number_value == 300
    assert logged["train.lr"].number_value == pytest.approx(1e-2)
    assert logged["model.cell"].string_value == "lstm"
    assert logged["train.out_dir"].string_value == str(trained_run)
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    metrics = {m.name.tag for m in experiment.experiment.metric_infos}
    assert metrics == {"val/loss", "val/bpc"}


def test_checkpoints_and_resolved_config_are_written(trained_run):
    ckpts = trained_run / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["best.pt", "last.pt"]  # no .tmp left
    last = load_checkpoint(ckpts / "last.pt")
    assert last["step"] == 300
    for key in ("model", "optimizer", "state", "rank_rngs", "vocab", "config", "format_version"):
        assert key in last
    saved = load_config(trained_run / "config.yaml")
    assert saved == Config.from_dict(last["config"])


def test_evaluation_and_checkpoints_do_not_disturb_training(corpus_file, tmp_path):
    """The carried state, RNG and weights after N steps are the same whether or not the
    run validated, sampled and saved along the way."""
    busy = run(
        small_config(
            corpus_file,
            tmp_path / "a",
            "train.max_steps=30",
            "train.eval_every=7",
            "train.checkpoint_every=5",
            "model.dropout=0.2",
        ),
        tmp_path,
    )
    calm = run(
        small_config(
            corpus_file,
            tmp_path / "b",
            "train.max_steps=30",
            "train.eval_every=1000",
            "train.checkpoint_every=1000",
            "model.dropout=0.2",
        ),
        tmp_path,
    )
    for p, q in zip(busy.model.parameters(), calm.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(busy.state[0], calm.state[0])


def test_same_seed_same_curve_other_seed_other_curve(corpus_file, tmp_path):
    curves = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        run(
            small_config(
                corpus_file,
                tmp_path / name,
                "train.max_steps=30",
                f"train.seed={seed}",
                "model.dropout=0.1",
            ),
            tmp_path,
        )
        curves.append(scalars(tmp_path / name, "train/loss"))
    assert curves[0] == curves[1]
    assert curves[0] != curves[2]


@pytest.mark.slow  # a process of its own (seconds): in `make test`
def test_resume_in_a_fresh_process_continues_bit_exactly(corpus_file, tmp_path):
    """40 steps in one run == 20 steps, then `charlstm train --resume` for 20 more in a
    new process: identical parameters, identical logged losses, one point per step."""
    # decay_steps fixes the schedule, so stopping at 20 of 40 is the only difference
    common = (
        "train.eval_every=10",
        "train.checkpoint_every=10",
        "model.dropout=0.1",
        "train.decay_steps=40",
    )
    run(small_config(corpus_file, tmp_path / "straight", "train.max_steps=40", *common), tmp_path)
    run(small_config(corpus_file, tmp_path / "split", "train.max_steps=20", *common), tmp_path)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "charlstm",
            "train",
            "--resume",
            str(tmp_path / "split"),
            "--set",
            "train.max_steps=40",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "changed on resume: train.max_steps: 20 -> 40" in proc.stdout
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert resumed["step"] == 40
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    for a, b in zip(straight["state"], resumed["state"], strict=True):
        assert torch.equal(a, b)
    losses = scalars(tmp_path / "split", "train/loss")
    assert [s for s, _ in losses] == [10, 20, 30, 40]
    assert losses == scalars(tmp_path / "straight", "train/loss")


def test_each_window_starts_from_the_state_the_window_before_ended_in(corpus_file, tmp_path):
    """TBPTT carries the state: a trainer that reset it every window would fail here."""
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=12")
    trainer = Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True)
    given, returned = [], []
    forward = trainer.net.forward

    def watch(inputs, state):
        given.append(None if state is None else [s.clone() for s in state])
        logits, new = forward(inputs, state)
        returned.append([s.detach().clone() for s in new])
        return logits, new

    trainer.net.forward = watch
    for _ in range(6):
        trainer.train_step()
    assert all(float(s.abs().sum()) == 0 for s in given[0])  # the epoch starts from zero
    for k in range(1, 6):
        for before, after in zip(given[k], returned[k - 1], strict=True):
            assert torch.equal(before, after) and float(after.abs().sum()) > 0


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_on_a_cpu_that_computes_in_it(
    corpus_file, tmp_path, monkeypatch, native
):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert training_precision("auto", torch.device("cuda")) == "fp32"
    assert training_precision("bf16", torch.device("cpu")) == "bf16"
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=3", "train.precision=auto")
    console = Console(record=True, width=200)
    try:
        trainer = Trainer(cfg, console=console)
    except ConfigError as error:  # support was faked, and this CPU has no bf16 LSTM kernel
        assert native and "cannot run a lstm in bfloat16" in str(error)
        return
    trainer.run()
    assert (" in bf16" in console.export_text()) == native


def test_the_bar_of_a_finished_run_says_it_is_done(corpus_file, tmp_path):
    """On a terminal the bar's last frame is 100% with nothing left, not the last log
    line's 93% and seconds "left"."""
    import io

    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150)
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=25", "log.log_every=10",
                       "train.eval_every=100")  # fmt: skip
    Trainer(cfg, console=console).run()
    frames = [f for f in screen.getvalue().split("\r") if "left" in f]
    assert "100%" in frames[-1] and "left 0:00" in frames[-1], frames[-1]  # the last log: 80%
