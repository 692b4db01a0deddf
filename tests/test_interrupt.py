"""Prompt stops: a signal during validation, eval or a long sample ends the command
within a few seconds (PROMPT_S: the work it cuts short would take far longer), with one
line; training saves last.pt first. Each test signals on an event the command prints,
never after a guessed sleep."""

import io
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from charlstm import progress
from charlstm.checkpoint import load_checkpoint
from charlstm.interrupt import Interrupted, StopRequests
from charlstm.progress import Work
from tests.conftest import make_text

# Signal to exit: saving last.pt, and a Python process with torch ending, on a busy
# 2-core machine. The validation and the eval they cut short run for 10 s and more.
PROMPT_S = 5.0


def charlstm(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "charlstm", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop_and_time(proc: subprocess.Popen, signum: int) -> tuple[float, str, str]:
    sent = time.monotonic()
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    return time.monotonic() - sent, stdout, stderr


def wait_for_line(
    proc: subprocess.Popen, text: str, timeout: float = 60, stream: str = "stdout"
) -> None:
    deadline = time.monotonic() + timeout
    for line in getattr(proc, stream):
        if text in line:
            return
        assert time.monotonic() < deadline
    pytest.fail(f"never printed {text!r}: {proc.communicate()}")


@pytest.fixture(scope="module")
def long_text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("long") / "long.txt"
    path.write_text(make_text(lines=40_000), encoding="utf-8")  # ~1.1 M characters
    return path


@pytest.mark.slow  # a process of its own (seconds): in `make test`
def test_a_stop_during_validation_saves_and_exits_promptly(long_text, tmp_path):
    # The whole 550 k-character split at every validation: many seconds each.
    out = tmp_path / "run"
    sets = [f"data.path={long_text}", f"train.out_dir={out}", "data.val_fraction=0.5",
            "train.eval_chars=null", "train.eval_every=3", "train.max_steps=1000",
            "train.batch_size=4", "train.bptt=16", "train.device=cpu", "log.sample_length=0",
            "log.log_every=3", f"data.cache_dir={tmp_path / 'cache'}"]  # fmt: skip
    proc = charlstm("train", "--quiet", *[a for s in sets for a in ("--set", s)])
    wait_for_line(proc, "step 3 ")  # the log line at step 3 comes just before validation
    time.sleep(0.5)  # into the validation's first windows
    took, _, stderr = stop_and_time(proc, signal.SIGTERM)
    assert proc.returncode == 143 and took < PROMPT_S, (took, stderr)
    assert stderr.strip().startswith("SIGTERM: stopped during validation after step 3")
    assert "Traceback" not in stderr
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 3


@pytest.mark.slow  # seconds of real training or scoring: in `make test`
def test_eval_of_a_long_text_stops_promptly(trained_run, long_text, tmp_path):
    # four times the long text: a one-stream pass of it takes far longer than the ten
    # seconds before the first progress line, however fast the machine is today
    longer = tmp_path / "longer.txt"
    longer.write_text(long_text.read_text(encoding="utf-8") * 4, encoding="utf-8")
    proc = charlstm("eval", "-c", str(trained_run), "--text", str(longer), "--streams", "1")
    wait_for_line(proc, "evaluating: ", stream="stderr")  # its first progress line
    assert proc.poll() is None
    took, stdout, stderr = stop_and_time(proc, signal.SIGINT)
    assert proc.returncode == 130 and took < PROMPT_S, (took, stderr)
    assert stderr.strip() == "SIGINT: evaluating stopped" and stdout == ""


def test_a_long_sample_stops_promptly(trained_run):
    proc = charlstm("sample", "-c", str(trained_run), "--length", "10000000", "--seed", "1")
    proc.stdout.read(2000)  # streaming: it is generating
    took, _, stderr = stop_and_time(proc, signal.SIGINT)
    assert proc.returncode == 130 and took < PROMPT_S
    assert stderr.strip() == "SIGINT: sampling stopped"


def test_work_shows_nothing_at_first_then_plain_lines_with_rate_and_time_left(monkeypatch):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=200)
    with Work("encoding corpus", 4_000_000, "bytes", console) as work:
        work.advance(1_000_000, files=3)
    assert buffer.getvalue() == ""  # under a second: silent
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    with Work("encoding corpus", 4_000_000, "bytes", console) as work:
        work.advance(1_000_000, files=3)
    line = buffer.getvalue().strip()
    assert line.startswith("encoding corpus: 1.0 MB of 4.0 MB (25%), 3 files, ")
    assert "MB/s, left " in line


def test_work_honours_a_stop_request():
    with StopRequests(), Work("evaluating", 10) as work:
        work.advance(1)
        signal.raise_signal(signal.SIGINT)
        with pytest.raises(Interrupted, match="SIGINT: evaluating stopped") as stopped:
            work.advance(1)
    assert stopped.value.exit_code == 130
