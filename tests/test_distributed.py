"""Data-parallel training under torchrun, on CPU with gloo: 2 ranks x B/2 streams train
exactly like 1 process x B streams, resume exactly, and never hang when a rank dies."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charlstm.checkpoint import load_checkpoint
from tests.conftest import scalars

pytestmark = pytest.mark.slow


def train_cmd(nproc: int, corpus: Path, out: Path, *sets: str, resume: bool = False) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}", "-m", "charlstm"] if nproc > 1 else \
               [sys.executable, "-m", "charlstm"]  # fmt: skip
    cmd = [*launcher, "train", "--quiet"] + (["--resume", str(out)] if resume else [])
    base = [f"data.path={corpus}", f"train.out_dir={out}", "train.batch_size=8", "train.bptt=32",
            "model.hidden_size=32", "model.embedding_dim=16", "train.lr=1e-2", "train.device=cpu",
            "train.eval_every=10", "train.checkpoint_every=5", "log.log_every=1",
            "train.decay_steps=20", "train.warmup_steps=2", "log.sample_length=20"]  # fmt: skip
    for s in base + list(sets):
        cmd += ["--set", s]
    return cmd


def run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return scalars(run_dir, "train/loss")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    """The 20-step single-process run that the two-rank runs are held to (on a corpus of
    the same text as each test's own corpus_file)."""
    from tests.conftest import make_text

    root = tmp_path_factory.mktemp("one")
    (root / "corpus.txt").write_text(make_text(), encoding="utf-8")
    cache = f"data.cache_dir={root / 'cache'}"  # module scope: before the per-test cache
    run(train_cmd(1, root / "corpus.txt", root / "one", "train.max_steps=20", cache))
    return root / "one"


LEFTOVERS = """
import gc, sys
gc.disable()  # the collector must not tidy up behind the trainer's back
from torch.nn.parallel import DistributedDataParallel
from charlstm.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    left = [o for o in gc.get_objects() if isinstance(o, DistributedDataParallel)]
    print(f"DDP left: {len(left)}", file=sys.stderr)
"""


def test_two_ranks_equal_one_process(corpus_file, tmp_path, one_process):
    # run through a script that counts the DDP wrappers left at exit: one still alive
    # holds the process group, whose teardown during interpreter shutdown can abort a
    # process after a run that finished well
    script = tmp_path / "leftovers.py"
    script.write_text(LEFTOVERS)
    cmd = train_cmd(2, corpus_file, tmp_path / "two", "train.max_steps=20")
    at = cmd.index("charlstm")
    cmd[at - 1 : at + 1] = [str(script)]  # the script in place of "-m charlstm"
    two = run(cmd)
    assert "x 2 ranks" in two.stdout
    assert two.stderr.count("DDP left: 0") == 2, two.stderr
    one_l, two_l = losses(one_process), losses(tmp_path / "two")
    assert [s for s, _ in one_l] == [s for s, _ in two_l] == list(range(1, 21))
    table = "\n".join(
        f"{s:>4} {a:.6f} {b:.6f} {b - a:+.1e}" for (s, a), (_, b) in zip(one_l, two_l, strict=True)
    )
    print("\nstep  1 rank   2 ranks  diff\n" + table)
    for (_, a), (_, b) in zip(one_l, two_l, strict=True):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6)
    p1 = load_checkpoint(one_process / "checkpoints" / "last.pt")
    p2 = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    for name, tensor in p1["model"].items():
        assert torch.allclose(tensor, p2["model"][name], atol=1e-5), name
    # the carried state of all 8 streams, in the single-process layout
    for a, b in zip(p1["state"], p2["state"], strict=True):
        assert a.shape == b.shape == (2, 8, 32) and torch.allclose(a, b, atol=1e-5)


def test_muon_under_two_ranks_equals_one_process(corpus_file, tmp_path):
    """Each rank steps Muon on the averaged gradients: the ranks stay one model, the
    single process's."""
    steps = ("train.max_steps=10", "train.optimizer=muon")
    run(train_cmd(1, corpus_file, tmp_path / "one", *steps))
    run(train_cmd(2, corpus_file, tmp_path / "two", *steps))
    one_l, two_l = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert [s for s, _ in one_l] == [s for s, _ in two_l] == list(range(1, 11))
    for (_, a), (_, b) in zip(one_l, two_l, strict=True):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    p1 = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    p2 = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert set(p2["optimizer"]) == {"adamw", "muon"}
    for name, tensor in p1["model"].items():
        diff = (tensor - p2["model"][name]).abs().max().item()
        # Muon orthogonalises in bf16 and Adam normalises: the ranks' float noise grows
        assert diff < 1e-2, (name, diff)


STRAIGHT = ("train.max_steps=40", "model.dropout=0.1")


@pytest.fixture(scope="module")
def two_ranks_straight(tmp_path_factory) -> tuple[Path, Path]:
    """(corpus, run): 40 steps under two ranks with dropout (each rank's random state
    matters), never stopped: what a resumed or restarted run must end equal to."""
    from tests.conftest import make_text

    root = tmp_path_factory.mktemp("straight")
    (root / "corpus.txt").write_text(make_text(), encoding="utf-8")
    run(train_cmd(2, root / "corpus.txt", root / "run", *STRAIGHT, f"data.cache_dir={root / 'c'}"))
    return root / "corpus.txt", root / "run"


def test_resume_under_two_ranks_continues_exactly(two_ranks_straight, tmp_path):
    corpus, straight = two_ranks_straight
    run(train_cmd(2, corpus, tmp_path / "split", "train.max_steps=20", "model.dropout=0.1"))
    run(train_cmd(2, corpus, tmp_path / "split", "train.max_steps=40", resume=True))
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert len(b["rank_rngs"]) == 2 and b["step"] == 40
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert losses(tmp_path / "split") == losses(straight)


def worker_pids(launcher_pid: int) -> dict[int, int]:
    """rank -> pid of the launcher's worker processes."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        rank = [e for e in env if e.startswith(b"RANK=")]
        if ppid == launcher_pid and rank:
            found[int(rank[0][5:])] = int(entry.name)
    return found


def test_a_dead_rank_stops_all_ranks_without_hanging(corpus_file, tmp_path):
    cmd = train_cmd(2, corpus_file, tmp_path / "run", "train.max_steps=100000")
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "checkpoints" / "last.pt").exists():
        assert launcher.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(worker_pids(launcher.pid)[1], signal.SIGKILL)
    _, stderr = launcher.communicate(timeout=120)  # no hang: everything ends
    assert launcher.returncode != 0
    assert "charlstm" in stderr and (
        "SIGKILL" in stderr or "Signal 9" in stderr or "exitcode" in stderr
    )
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["step"] >= 5


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_restart_after_a_dead_rank_continues_from_last_pt(two_ranks_straight, tmp_path):
    """torchrun --max-restarts: the restarted group resumes by itself and ends exactly
    where a run that never lost a rank ends."""
    corpus, straight = two_ranks_straight
    cmd = train_cmd(2, corpus, tmp_path / "run", *STRAIGHT)
    cmd.insert(cmd.index("--nproc_per_node=2"), "--max-restarts=1")
    cmd.insert(cmd.index("--quiet"), "--overwrite")  # even so, a restart never starts over
    launcher = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 60
    while not last.exists():
        assert launcher.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(worker_pids(launcher.pid)[1], signal.SIGKILL)
    stdout, stderr = launcher.communicate(timeout=240)
    assert launcher.returncode == 0, stdout + stderr
    assert "resuming at step" in stdout  # the second attempt continued the first
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(last)
    assert b["step"] == 40
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_two_nodes_on_one_machine_equal_one_process(corpus_file, tmp_path, one_process):
    """Two torchrun agents (--nnodes=2, one rank each) meet at a c10d rendezvous."""
    port = free_port()
    agents = []
    for _ in range(2):
        cmd = train_cmd(2, corpus_file, tmp_path / "two", "train.max_steps=20")
        at = cmd.index("--standalone")
        rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=t"]
        cmd[at : at + 2] = ["--nnodes=2", "--nproc_per_node=1", *rendezvous]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        agents.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    outputs = [a.communicate(timeout=240) for a in agents]
    for agent, (stdout, stderr) in zip(agents, outputs, strict=True):
        assert agent.returncode == 0, stdout + stderr
    assert any("x 2 ranks" in stdout for stdout, _ in outputs)
    p1 = load_checkpoint(one_process / "checkpoints" / "last.pt")
    p2 = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    for name, tensor in p1["model"].items():
        assert torch.allclose(tensor, p2["model"][name], atol=1e-5), name
    for (_, a), (_, b) in zip(losses(one_process), losses(tmp_path / "two"), strict=True):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-6)


def test_a_budget_run_under_two_ranks_agrees_on_one_schedule(corpus_file, tmp_path):
    proc = run(train_cmd(2, corpus_file, tmp_path / "run", "train.max_steps=null",
                         "train.max_seconds=6", "train.decay_steps=null"))  # fmt: skip
    assert "x 2 ranks" in proc.stdout
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    # one count for both ranks, and the run ends at it (or, when the machine slows in the
    # last seconds, at the hard stop a few steps before it)
    fitted = payload["schedule_steps"]
    assert 0.95 * fitted <= payload["step"] <= fitted and payload["step"] > 20
    assert payload["elapsed_seconds"] < 6 * 1.1
