"""What may change when a run is resumed, and what may not.

A resumed run must continue the same learning problem: the same model shape, the same
vocabulary and the same stream layout (corpus, split, batch_size, bptt), or the weights,
optimizer moments and carried hidden state no longer fit. Everything else (max_steps,
max_seconds, eval_every, lr schedule, weight decay, logging) may change, takes effect
and is reported; the seed may not (the random states come from the checkpoint).
"""

from __future__ import annotations

import os
from pathlib import Path

from charlstm.checkpoint import Checkpoint, read_checkpoint
from charlstm.config import Config
from charlstm.data.corpus import changed_corpus
from charlstm.data.vocab import Vocab
from charlstm.errors import CheckpointError
from charlstm.rundir import CHECKPOINTS, LAST, RunDir

# Keys that fix the learning problem; `model` as a whole is fixed too.
FIXED_KEYS = (
    "data.path",
    "data.include",
    "data.exclude",
    "data.respect_ignore",
    "data.field",
    "data.encoding",
    "data.newlines",
    "data.vocab",
    "data.val_fraction",
    "data.documents",
    "data.document_state",
    "data.val_max_documents",
    "data.label_separator",
    "data.label_field",
    "data.task_count",
    "data.task_seed",
    "data.task_n_min",
    "data.task_n_max",
    "train.batch_size",
    "train.bptt",
    # The random states come from the checkpoint: a new seed could not take effect.
    "train.seed",
    # The weights come from the checkpoint: a new base model could not take effect.
    "train.init_from",
    # The choice was made when the run began; config.yaml holds it.
    "train.auto",
    # The moments saved are the optimizer's own: another could not take them.
    "train.optimizer",
)


def check_resumable(saved: Checkpoint, cfg: Config, vocab: Vocab, corpus_key: str) -> list[str]:
    """Raise CheckpointError when `cfg` cannot continue the checkpoint; else list the
    settings that changed, as `key: old -> new`."""
    old, new = saved.config.flat(), cfg.flat()
    changed = [k for k in new if old.get(k) != new[k]]
    fixed = [k for k in changed if k.startswith("model.") or k in FIXED_KEYS]
    if fixed:
        shown = ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in fixed)
        raise CheckpointError(
            f"cannot resume with a changed {shown}: start a new run (a new train.out_dir)"
        )
    if saved.corpus_key is not None and saved.corpus_key != corpus_key:
        raise CheckpointError(changed_corpus(cfg.data.path, "resume"))
    if saved.vocab != vocab:
        raise CheckpointError(
            f"cannot resume: the corpus now has a different vocabulary ({vocab.size} symbols, "
            f"checkpoint {saved.vocab.size}); resume on the same corpus"
        )
    return [f"{k}: {old.get(k)!r} -> {new[k]!r}" for k in changed if k != "train.out_dir"]


def resume_checkpoint(given: Path) -> tuple[Checkpoint, RunDir]:
    """The last.pt of a run folder (or a run's checkpoint file), and the run it
    continues."""
    if not given.exists():
        raise CheckpointError(f"checkpoint not found: {given} (--resume takes a run folder)")
    if given.is_dir():
        run = RunDir(given)
        if not run.last.is_file():
            raise CheckpointError(f"nothing to resume in {given}: no {CHECKPOINTS}/{LAST} there")
        path = run.last
    else:
        run = RunDir.of_checkpoint(given)  # RUN/checkpoints/last.pt continues RUN
        if run is None:
            raise CheckpointError(
                f"--resume takes a run folder (or a checkpoint in its {CHECKPOINTS}/ folder), "
                f"not {given}"
            )
        path = given
    return read_checkpoint(path), run


def restart_run(cfg: Config) -> RunDir | None:
    """The run to continue when torchrun restarted this worker group (a rank died and
    --max-restarts allowed another attempt): train.out_dir, if it holds a last.pt by now.
    A restart must continue the run it replaces, never start it over."""
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0:
        return None
    run = RunDir(cfg.train.out_dir)
    return run if run.holds_run() else None
