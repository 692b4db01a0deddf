"""A training run's folder: the one place that knows its layout.

RUN/
  config.yaml                  the resolved config the run trains with
  .lock, .lock.pid             held by the live trainer, and its pid (training/runlock.py)
  events.out.tfevents.*        TensorBoard's curves, samples and hparams
  checkpoints/last.pt          everything needed to resume, saved every checkpoint_every
  checkpoints/best.pt          the weights with the lowest validation loss so far
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

LAST, BEST = "last.pt", "best.pt"
# An exported model's folder: its weights, beside config.json (Hugging Face's layout).
SAFETENSORS, SAFETENSORS_CONFIG = "model.safetensors", "config.json"
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    def __str__(self) -> str:
        return str(self.root)

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last(self) -> Path:
        return self.checkpoints / LAST

    @property
    def best(self) -> Path:
        return self.checkpoints / BEST

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def skipped_file(self) -> Path:
        return self.root / "skipped.txt"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def lock_owner_file(self) -> Path:
        return self.root / ".lock.pid"

    def event_files(self) -> list[Path]:
        return sorted(self.root.glob("events.out.tfevents.*"))

    def checkpoint_files(self) -> list[Path]:
        return sorted(self.checkpoints.glob("*.pt"))

    def holds_run(self) -> bool:
        """A run has been saved here (a new run must not silently replace it)."""
        return self.last.is_file()

    def trained_on(self) -> str | None:
        """The data.path this run's config.yaml names, if it can be read."""
        import yaml

        try:
            with open(self.config_file, encoding="utf-8") as f:
                config = yaml.safe_load(f.read(1 << 20))
            return str(config["data"]["path"])
        except (OSError, UnicodeDecodeError, yaml.YAMLError, TypeError, KeyError):
            return None

    @classmethod
    def for_corpus(cls, corpus: Path, parent: Path = Path("runs")) -> RunDir:
        """runs/NAME for the corpus NAME.txt (or the folder NAME): the first of runs/NAME,
        runs/NAME-2, ... that holds no run or a run of this same corpus, so two corpora
        with one file name never share (or are told to resume) each other's run."""
        name = corpus.resolve().name.split(".", 1)[0] or "corpus"
        for n in range(1, 10_000):
            run = cls(parent / (name if n == 1 else f"{name}-{n}"))
            if not run.holds_run() or _same_path(run.trained_on(), corpus):
                return run
        raise RuntimeError(f"{parent} holds 10,000 runs named {name}")

    def for_inference(self) -> Path | None:
        """The checkpoint to sample from: best.pt, else last.pt (also when the files lie
        loose in the folder itself)."""
        for folder in (self.checkpoints, self.root):
            for name in (BEST, LAST):
                if (folder / name).is_file():
                    return folder / name
        if (self.root / SAFETENSORS).is_file():  # an exported model (export --format safetensors)
            return self.root / SAFETENSORS
        return None

    @staticmethod
    def of_checkpoint(path: Path) -> RunDir | None:
        """The run a checkpoint file belongs to (RUN/checkpoints/X.pt), if it is in one."""
        return RunDir(path.parent.parent) if path.parent.name == CHECKPOINTS else None

    @staticmethod
    def newest(runs_dir: Path) -> RunDir | None:
        """The run under runs_dir saved most recently."""
        saved = sorted(runs_dir.glob(f"*/{CHECKPOINTS}/{LAST}"), key=lambda p: p.stat().st_mtime)
        return RunDir(saved[-1].parent.parent) if saved else None


def _same_path(named: str | None, path: Path) -> bool:
    return named is not None and Path(named).resolve() == path.resolve()
