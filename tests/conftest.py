"""Shared fixtures: small corpora written by the tests, and one tiny trained model."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from charlstm.config import Config

WORDS = "the a cat dog sat ran on under mat log big small red blue and then".split()


def make_text(lines: int = 400, seed: int = 0) -> str:
    """Sentences from a small grammar: easy to learn, impossible to learn by rote alone."""
    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        n = rng.randint(3, 8)
        out.append(" ".join(rng.choice(WORDS) for _ in range(n)) + ".")
    return "\n".join(out) + "\n"


_open_logs: list = []


def quiet_console(path: Path):
    """A rich Console that writes to the file `path` (appending), not to the terminal;
    the file is closed when the test ends."""
    from rich.console import Console

    log = open(path, "a", encoding="utf-8")
    _open_logs.append(log)
    return Console(file=log)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A test that trains with train.threads leaves the process as it found it: a later
    test comparing with a fresh process must see the default thread count."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _close_logs():
    yield
    while _open_logs:
        _open_logs.pop().close()


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every point TensorBoard holds for `tag` in a run folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Encoded corpora go to a per-session temporary cache, never the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(make_text(), encoding="utf-8")
    return path


def small_config(corpus: Path, out_dir: Path, *overrides: str) -> Config:
    """A config that trains a small LSTM on `corpus` in a few seconds."""
    base = [
        f"data.path={corpus}",
        "data.val_fraction=0.1",
        "model.embedding_dim=16",
        "model.hidden_size=64",
        "model.num_layers=2",
        "train.batch_size=8",
        "train.bptt=32",
        "train.max_steps=200",
        "train.lr=1e-2",
        "train.warmup_steps=10",
        "train.eval_every=100",
        "train.checkpoint_every=100",
        "train.device=cpu",
        f"train.out_dir={out_dir}",
        "log.log_every=10",
        "log.sample_length=50",
    ]
    return Config.from_dict({}, base + list(overrides))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One small model trained once for the whole session (sample/eval/info tests)."""
    from rich.console import Console

    from charlstm.training.trainer import Trainer

    root = tmp_path_factory.mktemp("trained")
    corpus = root / "corpus.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    cfg = small_config(
        corpus, root / "run", "train.max_steps=300", f"data.cache_dir={root / 'cache'}"
    )
    with open(root / "log.txt", "w", encoding="utf-8") as log:
        Trainer(cfg, console=Console(file=log), quiet=True).run()
    return root / "run"


# Text that breaks a page filled by string replacement: it closes the script and the
# title, opens tags and comments, and holds every placeholder those pages ever used.
HOSTILE = (
    '</script><script>alert("x")</script> </title><b>&amp;</b> <!-- '
    "$DATA $TITLE $ROWS __SCRIPT__ __MODEL__ {{ x }} '"
)


@pytest.fixture(scope="session")
def hostile_run(tmp_path_factory) -> Path:
    """A tiny model whose corpus (and so vocabulary) holds HOSTILE."""
    from rich.console import Console

    from charlstm.training.trainer import Trainer

    root = tmp_path_factory.mktemp("hostile")
    corpus = root / "corpus.txt"
    corpus.write_text((make_text(lines=100) + HOSTILE + "\n") * 3, encoding="utf-8")
    cfg = small_config(corpus, root / "run", "train.max_steps=4", "train.eval_every=4",
                       "model.hidden_size=16", f"data.cache_dir={root / 'cache'}")  # fmt: skip
    with open(root / "log.txt", "w", encoding="utf-8") as log:
        Trainer(cfg, console=Console(file=log), quiet=True).run()
    return root / "run"


@pytest.fixture(scope="session")
def task_runs(tmp_path_factory) -> dict[str, Path]:
    """configs/counter.yaml and configs/state.yaml trained as they ship, side by side in
    two processes of one thread each (each a 1x10 LSTM: one core apiece is what they
    use): the acceptance tests and the ablation test share them."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("tasks")
    repo = Path(__file__).parent.parent
    procs = {}
    for task in ("counter", "state"):
        cmd = [sys.executable, "-m", "charlstm", "train", "--config",
               str(repo / f"configs/{task}.yaml"), "--set", f"train.out_dir={root / task}",
               "--set", "train.threads=1", "--quiet"]  # fmt: skip
        log = open(root / f"{task}.log", "w", encoding="utf-8")
        procs[task] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log)
    for task, (proc, log) in procs.items():
        code = proc.wait(timeout=600)
        log.close()
        assert code == 0, (root / f"{task}.log").read_text()
    return {task: root / task for task in procs}
