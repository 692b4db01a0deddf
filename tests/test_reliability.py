"""Never lose a run: signals, kills, failed saves, non-finite numbers, resume guards."""

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charlstm import checkpoint as ckpt_mod
from charlstm.checkpoint import Checkpoint, load_checkpoint
from charlstm.errors import CheckpointError
from charlstm.training.optim import lr_at
from charlstm.training.trainer import Trainer
from tests.conftest import quiet_console, small_config


def start_training(corpus: Path, out: Path, *sets: str, resume: bool = False) -> subprocess.Popen:
    args = [
        f"data.path={corpus}",
        f"train.out_dir={out}",
        "train.max_steps=100000",
        "train.batch_size=8",
        "train.bptt=32",
        "train.device=cpu",
        "train.eval_every=100000",
        "model.hidden_size=64",
        *sets,
    ]
    cmd = [sys.executable, "-m", "charlstm", "train", "--quiet"]
    if resume:
        cmd += ["--resume", str(out)]
    for a in args:
        cmd += ["--set", a]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(
    path: Path, proc: subprocess.Popen, timeout: float = 60, changed_since: int | None = None
) -> None:
    """Until `path` exists (and, with `changed_since`, was written after that mtime)."""

    def ready() -> bool:
        try:
            return path.stat().st_mtime_ns != changed_since  # None: any file will do
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow  # a process of its own (seconds): in `make test`
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_last_and_says_how_to_resume(corpus_file, tmp_path, signum, code):
    out = tmp_path / "run"
    proc = start_training(corpus_file, out, "train.checkpoint_every=20")
    wait_for(out / "checkpoints" / "last.pt", proc)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code
    line = stderr.strip()
    assert line.startswith(signal.Signals(signum).name) and "Traceback" not in stderr
    assert f"resume with: charlstm train --resume {out}" in line
    saved = load_checkpoint(out / "checkpoints" / "last.pt")
    assert f"stopped after step {saved['step']}," in line  # the step it stopped at, not older


@pytest.mark.slow
def test_killed_at_random_moments_always_leaves_a_loadable_last(corpus_file, tmp_path):
    """SIGKILL (no handler can run) at random points, many of them inside a save: the
    real name always holds a whole checkpoint, and the run resumes from it."""
    out = tmp_path / "run"
    rng = random.Random(0)
    steps_seen, mid_save = [], 0
    for attempt in range(4):
        # a checkpoint at every step, big enough that saving takes a good share of the time
        sets = ("train.checkpoint_every=1", "model.hidden_size=384")
        last = out / "checkpoints" / "last.pt"
        before = last.stat().st_mtime_ns if attempt > 0 else None
        proc = start_training(corpus_file, out, *sets, resume=attempt > 0)
        # past start-up (which takes seconds), into the step/save loop: a new save, then
        # a random moment after it
        wait_for(last, proc, changed_since=before)
        time.sleep(rng.uniform(0.0, 2.0))
        proc.kill()
        _, stderr = proc.communicate()
        assert "error" not in stderr, stderr  # killed while it worked, never failed first
        names = sorted(p.name for p in (out / "checkpoints").iterdir())
        assert set(names) <= {"last.pt", "last.pt.tmp"}, names
        mid_save += "last.pt.tmp" in names  # this kill landed inside a save
        steps_seen.append(load_checkpoint(out / "checkpoints" / "last.pt")["step"])
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0] + 5
    print(f"{len(steps_seen)} kills, {mid_save} inside a save, last.pt steps {steps_seen}")
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "charlstm",
            "train",
            "--resume",
            str(out),
            "--quiet",
            "--set",
            f"train.max_steps={steps_seen[-1] + 3}",
        ],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == steps_seen[-1] + 3


def test_failed_save_keeps_previous_checkpoint_and_stops_clearly(
    corpus_file, tmp_path, monkeypatch
):
    cfg = small_config(
        corpus_file,
        tmp_path / "run",
        "train.max_steps=40",
        "train.checkpoint_every=10",
        "train.eval_every=1000",
    )
    trainer = Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True)
    real_save = torch.save
    calls = []

    def fail_after_first(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(ckpt_mod.torch, "save", fail_after_first)
    with pytest.raises(CheckpointError, match="No space left on device.*previous checkpoint"):
        trainer.run()
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 10
    assert not (tmp_path / "run" / "checkpoints" / "last.pt.tmp").exists()


def test_a_skipped_update_leaves_weights_moments_and_state_as_they_were(corpus_file, tmp_path):
    trainer = Trainer(
        small_config(corpus_file, tmp_path / "run"), console=quiet_console(tmp_path / "log.txt")
    )
    for _ in range(3):
        trainer.train_step()
    clone = lambda tensors: [t.clone() for t in tensors]  # noqa: E731
    moments = lambda: [t for s in trainer.optimizer.state.values() for t in s.values()]  # noqa: E731
    before = clone(trainer.model.parameters()), clone(moments()), clone(trainer.state)
    trainer.model.decoder.weight.register_hook(lambda g: g * float("nan"))
    _, _, skipped = trainer.train_step()
    assert skipped.item() == 1
    after = list(trainer.model.parameters()), moments(), list(trainer.state)
    for old, new in zip(before, after, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(old, new, strict=True))


def test_resume_refuses_a_changed_model_or_layout(corpus_file, tmp_path):
    from typer.testing import CliRunner

    from charlstm.cli import app

    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=10")
    Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True).run()
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    for change, named in [
        ("model.hidden_size=32", "model.hidden_size (64 -> 32)"),
        ("train.batch_size=4", "train.batch_size (8 -> 4)"),
    ]:
        result = CliRunner().invoke(
            app, ["train", "--resume", str(tmp_path / "run"), "--set", change]
        )
        assert result.exit_code == 1
        assert f"cannot resume with a changed {named}" in result.output
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "checkpoint not found" in result.output
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before


def test_a_new_run_never_replaces_an_old_one_unasked(corpus_file, tmp_path):
    from typer.testing import CliRunner

    from charlstm.cli import app

    Trainer(
        small_config(corpus_file, tmp_path / "run", "train.max_steps=10"),
        console=quiet_console(tmp_path / "log.txt"),
        quiet=True,
    ).run()
    before = (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes()
    args = [
        "train",
        "--set",
        f"data.path={corpus_file}",
        "--set",
        f"train.out_dir={tmp_path / 'run'}",
        "--set",
        "train.batch_size=8",
        "--set",
        "train.max_steps=5",
        "--quiet",
    ]
    result = CliRunner().invoke(app, args)
    assert (
        result.exit_code == 1
        and "already holds a run" in result.output
        and "--resume" in result.output
    )
    assert (tmp_path / "run" / "checkpoints" / "last.pt").read_bytes() == before
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] == 5
    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 1


# -- one run per folder --------------------------------------------------------------


@pytest.mark.slow  # seconds of real training or scoring: in `make test`
def test_a_second_process_into_a_live_run_folder_refuses_and_the_run_survives(
    corpus_file, tmp_path
):
    out = tmp_path / "run"
    live = start_training(corpus_file, out, "train.checkpoint_every=20")
    wait_for(out / "checkpoints" / "last.pt", live)
    seconds = []  # the three tries at once: each only starts up and is refused
    for extra in (["--overwrite"], ["--resume", str(out)], []):
        cmd = [sys.executable, "-m", "charlstm", "train", "--quiet", *extra,
               "--set", f"data.path={corpus_file}", "--set", f"train.out_dir={out}",
               "--set", "train.batch_size=8", "--set", "train.bptt=32",
               "--set", "model.hidden_size=64", "--set", "train.device=cpu"]  # fmt: skip
        if extra[:1] == ["--resume"]:
            cmd = cmd[: cmd.index("--set")]
        seconds.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True))  # fmt: skip
    for second in seconds:
        stdout, stderr = second.communicate(timeout=120)
        assert second.returncode == 1, stdout + stderr
        line = stderr.strip()
        assert line == (
            f"error: {out} is in use by another charlstm train (pid {live.pid}): wait for it "
            "to end or stop it, or pick another train.out_dir"
        )
    assert live.poll() is None  # untouched: still training, checkpoints still there
    step = load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    time.sleep(1.5)
    live.kill()  # kill -9: the kernel drops the lock with the process
    live.wait()
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] >= step
    resumed = start_training(corpus_file, out, "train.max_steps=1", resume=True)
    _, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0 or "max_steps" in stderr, stderr
    assert "in use by another" not in stderr


# -- resume keeps its promise ------------------------------------------------------------


def trained(corpus_file, tmp_path):
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=10")
    Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True).run()
    return load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")


@pytest.mark.parametrize(
    "change, effect",
    [
        ("train.weight_decay=0.5", lambda t: t.optimizer.param_groups[0]["weight_decay"] == 0.5),
        (
            "train.lr=0.05",
            lambda t: (
                t.optimizer.param_groups[0]["lr"] == pytest.approx(lr_at(t.step - 1, t.cfg.train))
            ),
        ),  # fmt: skip
        ("train.max_steps=13", lambda t: t.step == 13),
        ("train.eval_chars=20", lambda t: len(t.data.val_ids) == 21),
    ],
)
def test_each_change_allowed_on_resume_takes_effect(corpus_file, tmp_path, change, effect):
    payload = trained(corpus_file, tmp_path)
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=13", change)
    trainer = Trainer(
        cfg,
        resume=Checkpoint.from_payload(payload),
        console=quiet_console(tmp_path / "log.txt"),
        quiet=True,
    )
    assert any(c.startswith(change.split("=")[0]) for c in trainer.resume_changes) or (
        "max_steps" in change
    )
    trainer.run()
    assert effect(trainer)


@pytest.mark.parametrize("change", ["train.seed=7", "data.task_seed=3", "data.task_count=500"])
def test_changes_that_could_not_take_effect_are_refused(tmp_path, change):
    task = ["data.path=task:counter", "data.task_count=400"]
    cfg = small_config(tmp_path, tmp_path / "run", "train.max_steps=5", *task)
    Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True).run()
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    changed = small_config(tmp_path, tmp_path / "run", "train.max_steps=9", *task, change)
    with pytest.raises(
        CheckpointError, match=f"cannot resume with a changed {change.split('=')[0]}"
    ):
        Trainer(
            changed,
            resume=Checkpoint.from_payload(payload),
            console=quiet_console(tmp_path / "log.txt"),
            quiet=True,
        )


def test_a_corpus_whose_content_changed_is_refused_by_resume_and_eval(corpus_file, tmp_path):
    from typer.testing import CliRunner

    from charlstm.cli import app

    payload = trained(corpus_file, tmp_path)
    assert len(payload["corpus_key"]) == 32
    text = corpus_file.read_text()
    corpus_file.write_text(text.replace("cat", "dog"))  # same vocabulary, other text
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=20")
    with pytest.raises(CheckpointError, match=f"data.path {corpus_file} is not the text"):
        Trainer(
            cfg,
            resume=Checkpoint.from_payload(payload),
            console=quiet_console(tmp_path / "log.txt"),
            quiet=True,
        )
    result = CliRunner().invoke(app, ["eval", "-c", str(tmp_path / "run"), "--split", "val"])
    assert result.exit_code == 1 and "is not the text this checkpoint was trained on" in (
        result.output
    )
    assert "fine-tuning" in result.output
    corpus_file.write_text(text)  # back as it was: both work again
    result = CliRunner().invoke(app, ["eval", "-c", str(tmp_path / "run"), "--split", "val"])
    assert result.exit_code == 0, result.output


# -- real faults --------------------------------------------------------------------------


@pytest.fixture
def small_filesystem(tmp_path):
    """A real 3 MB tmpfs, when the tests run as root and may mount one."""
    import os

    mount = tmp_path / "small-fs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)],
                          capture_output=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.slow  # a process of its own (seconds): in `make test`
def test_a_full_disk_during_a_save_is_one_line_and_keeps_the_last_checkpoint(
    corpus_file, tmp_path, small_filesystem
):
    out = small_filesystem / "run"
    proc = start_training(corpus_file, out, "train.checkpoint_every=10", "model.hidden_size=96")
    wait_for(out / "checkpoints" / "last.pt", proc)
    saved = load_checkpoint(out / "checkpoints" / "last.pt")["step"]
    with open(small_filesystem / "filler", "wb") as f:  # fill what is left
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1, stderr
    line = stderr.strip()
    assert "\n" not in line and "Traceback" not in stderr
    assert line.startswith("error: could not write checkpoint") and "intact" in line
    after = load_checkpoint(out / "checkpoints" / "last.pt")
    assert after["step"] >= saved and not list((out / "checkpoints").glob("*.tmp"))


CHANGED_ON_RESUME = {
    "data.cache_dir": "{tmp}/other-cache",
    "train.max_steps": 12,
    "train.max_seconds": 600,
    "train.lr": 0.02,
    "train.warmup_steps": 3,
    "train.decay_steps": 50,
    "train.final_lr_fraction": 0.5,
    "train.weight_decay": 0.2,
    "train.grad_clip": 0.5,
    "train.ema": 0.9,
    "train.eval_every": 4,
    "train.eval_streams": 2,
    "train.eval_chars": 50,
    "train.checkpoint_every": 3,
    "train.device": "cpu",
    "train.threads": 1,
    "train.precision": "auto",  # bf16 is not on every CPU; auto runs everywhere
    "train.spike_factor": 3.0,
    "train.max_rollbacks": 2,
    "train.patience": 50,
    "train.keep_checkpoints": 1,
    "log.log_every": 1,
    "log.sample_length": 7,
    "log.sample_temperature": 0.5,
    "log.sample_prime": "the",
    "serve.chat_template": "{{ messages }}",
    "serve.chat_end": "END",
}


def test_every_key_allowed_to_change_on_resume_is_listed_and_runs_with_its_new_value(
    corpus_file, tmp_path
):
    from charlstm.config import all_keys
    from charlstm.training.resume import FIXED_KEYS

    changeable = {k for k in all_keys() if not k.startswith("model.") and k not in FIXED_KEYS}
    assert changeable - {"train.out_dir"} == set(CHANGED_ON_RESUME)
    payload = trained(corpus_file, tmp_path)
    sets = [f"{k}={str(v).format(tmp=tmp_path)}" for k, v in CHANGED_ON_RESUME.items()]
    cfg = small_config(corpus_file, tmp_path / "run", *sets)
    threads = torch.get_num_threads()
    trainer = Trainer(
        cfg,
        resume=Checkpoint.from_payload(payload),
        console=quiet_console(tmp_path / "log.txt"),
        quiet=True,
    )
    reported = {change.split(":")[0] for change in trainer.resume_changes}
    assert reported == set(CHANGED_ON_RESUME) - {"train.device"}  # cpu both times
    group = trainer.optimizer.param_groups[0]
    assert group["weight_decay"] == 0.2
    assert trainer.average.decay == 0.9  # a run that kept no average starts one
    try:
        trainer.run()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert trainer.step == 12 and group["lr"] == pytest.approx(lr_at(11, trainer.cfg.train))
    assert len(trainer.data.val_ids) == 51 and (tmp_path / "other-cache").is_dir()


def test_a_failed_tensorboard_write_stops_the_events_not_the_run(tmp_path):
    """TensorBoard's writing thread dies first on a full disk and raises at the next
    call, wherever that is: the events stop, training goes on (its next checkpoint says
    in one line whether the disk can take it)."""
    from charlstm.config import Config
    from charlstm.training.monitor import RunWriter

    writer = RunWriter(tmp_path, Config())

    class Full:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise OSError(28, "No space left on device")

            return fail

    writer.writer.close()
    writer.writer = Full()
    writer.train_scalars(1, 2.0, 1.0, 1e-3, 100.0, 0, 0)  # no exception
    assert not writer.enabled
    writer.validation(2, 1.5, "text")
    writer.text("diagnosis", "fine", 2)
    writer.close()
