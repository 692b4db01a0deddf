"""A run that watches itself: a blow-up is rolled back, a run that stopped improving
ends, the last validations' weights are kept by name, and the end of a run says in
plain words how it went.

- Roll-back (`Guard`). At every log point the mean training loss since the last one is
  read anyway. A window whose loss is non-finite (its updates were skipped on the
  device) or above `train.spike_factor` x the last healthy window's (and half a nat above
  it) is a blow-up: the weights, optimizer moments and weight average go back to the
  last good snapshot, the carried state starts afresh, and the rate is halved from then
  on. A snapshot counts as good once the window after it was healthy too, so an update
  that went wrong just before a snapshot is never what training returns to. The
  snapshots live in memory only; a resumed run starts with its checkpoint as the good
  one (roll-backs within one log interval after a resume may go back further than the
  run that never stopped would have).
- Early stopping (`stale_validations`): `train.patience` validations in a row without a
  better one end the run; best.pt holds the best.
- Numbered checkpoints (`numbered_name`): char-rnn's habit of naming each saved model by
  where it was and how it scored.
- The diagnosis (`diagnose`): memorising, unstable, still learning or converged, from
  every validation of the run (the checkpoint carries them, so a resumed run has them).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from charlstm.config import Config, TrainConfig
from charlstm.errors import CharlstmError
from charlstm.rundir import BEST, LAST

SPIKE_MARGIN = 0.5  # nats: a blow-up rises by at least this much, whatever the factor
# Validation moving by less than this (nats/char) is noise, not a change in direction.
NOISE = 0.01


def _cloned(obj: Any) -> Any:
    """A deep copy whose tensors stay on their device (optimizer states nest dicts)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: _cloned(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_cloned(v) for v in obj)
    return obj


@dataclass
class Snapshot:
    step: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    average: dict[str, torch.Tensor] | None


class Guard:
    """Watches the logged training loss and rolls a blow-up back (module docstring)."""

    def __init__(self, cfg: TrainConfig, model, optimizer, average, kept=lambda: []):
        self.cfg = cfg
        self.kept = kept  # the checkpoint files on disk (a message tells the truth of them)
        self.model, self.optimizer, self.average = model, optimizer, average
        self.lr_scale = 1.0
        self.rollbacks = 0
        self.good: Snapshot | None = None
        self.pending: Snapshot | None = None
        self.recent: float | None = None  # the last healthy window's loss
        self.skips_seen = 0

    @property
    def enabled(self) -> bool:
        return self.cfg.spike_factor > 0

    def start(self, step: int, skips: int) -> None:
        """Where the run (or its resumed part) begins is good: a fresh model, or weights
        that were saved, which are finite."""
        self.skips_seen = skips
        if self.enabled:
            self.good = self._snapshot(step)

    def check(self, step: int, loss: float | None, skips: int) -> str | None:
        """At a log point: `loss` is the window's mean over its applied updates (None
        when all were skipped), `skips` the run's skipped updates so far. Returns what
        was done when it rolled back."""
        skipped, self.skips_seen = skips - self.skips_seen, skips
        if not self.enabled:
            return None
        blown = skipped > 0 or loss is None or not math.isfinite(loss)
        if not blown and self.recent is not None:
            blown = loss > max(self.cfg.spike_factor * self.recent, self.recent + SPIKE_MARGIN)
        if blown:
            return self._roll_back(step, loss, skipped)
        self.recent = loss
        if self.pending is not None:  # the window after it was healthy: it is good
            self.good = self.pending
        self.pending = self._snapshot(step)
        return None

    def _snapshot(self, step: int) -> Snapshot:
        return Snapshot(
            step,
            _cloned(self.model.state_dict()),
            _cloned(self.optimizer.state_dict()),
            _cloned(self.average.state_dict()) if self.average is not None else None,
        )

    def _roll_back(self, step: int, loss: float | None, skipped: int) -> str:
        self.rollbacks += 1
        what = (
            f"{skipped} non-finite update(s)"
            if skipped or loss is None or not math.isfinite(loss)
            else f"loss {loss:.3f} after {self.recent:.3f}"
        )
        if self.rollbacks > self.cfg.max_rollbacks:
            names = sorted({p.name for p in self.kept()} & {LAST, BEST}, reverse=True)
            held = " and ".join(names) + " hold good weights" if names else "nothing saved yet"
            raise CharlstmError(
                f"training blew up again at step {step} ({what}) after "
                f"{self.cfg.max_rollbacks} roll-backs, the rate down to "
                f"{self.lr_scale:g} x the schedule: lower train.lr or train.grad_clip ({held})"
            )
        good = self.good
        self.model.load_state_dict(good.model)
        self.optimizer.load_state_dict(_cloned(good.optimizer))
        if self.average is not None:
            self.average.load_state_dict(good.average)
        self.lr_scale /= 2
        self.pending = None
        return (
            f"step {step}: {what}: rolled back to the weights of step {good.step}, "
            f"rate now {self.lr_scale:g} x the schedule (roll-back {self.rollbacks} of at "
            f"most {self.cfg.max_rollbacks})"
        )


# -- early stopping and numbered checkpoints ---------------------------------------------
def stale_validations(history: list[list[float]]) -> int:
    """Validations since the best one (0: the last was the best)."""
    if not history:
        return 0
    losses = [entry[2] for entry in history]
    return len(losses) - 1 - losses.index(min(losses))


NUMBERED = re.compile(r"step-(\d+)-val-[0-9.]+\.pt")


def numbered_name(step: int, val_loss: float) -> str:
    return f"step-{step:06d}-val-{val_loss:.4f}.pt"


def stop_for_patience(history: list[list[float]], patience: int | None) -> str | None:
    """Why train.patience ends the run now, if it does."""
    if patience is None or stale_validations(history) < patience:
        return None
    best = min(entry[2] for entry in history)
    return (
        f"stopped early: {patience} validation(s) in a row without a better one than "
        f"{best:.4f} (train.patience); best.pt holds it"
    )


def keep_numbered(folder: Path, just_saved: str, keep: int) -> None:
    """Drop the oldest numbered checkpoints beyond `keep` (the one just queued may not
    be on disk yet: it counts all the same)."""
    others = [p for p in numbered_checkpoints(folder) if p.name != just_saved]
    for old in others[: max(0, len(others) - (keep - 1))]:
        old.unlink(missing_ok=True)


def numbered_checkpoints(folder: Path) -> list[Path]:
    """The numbered checkpoints in a folder, oldest step first."""
    found = [p for p in folder.glob("step-*-val-*.pt") if NUMBERED.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(NUMBERED.fullmatch(p.name).group(1)))


# -- the diagnosis -------------------------------------------------------------------------
def diagnose(history: list[list[float]], cfg: Config) -> str:
    """How the run went, in one paragraph with its numbers and one suggestion."""
    if len(history) < 2:
        return (
            "one validation only: too few to say how training went "
            "(a lower train.eval_every gives more)"
        )
    steps = [int(e[0]) for e in history]
    train = [e[1] for e in history]
    val = [e[2] for e in history]
    best = val.index(min(val))
    rise = val[-1] - val[best]
    if best < len(val) - 1 and rise > NOISE:
        told = (
            f"validation rose from {val[best]:.3f} (step {steps[best]}) to {val[-1]:.3f} "
            f"(step {steps[-1]})"
        )
        if train[-1] < train[best] - NOISE:
            return (
                f"memorising: {told} while the training loss fell from {train[best]:.3f} to "
                f"{train[-1]:.3f}; best.pt is from step {steps[best]}. Next time: "
                f"{_against_memorising(cfg)}"
            )
        return (
            f"unstable: {told} and the training loss did not fall ({train[best]:.3f} to "
            f"{train[-1]:.3f}); best.pt is from step {steps[best]}. Next time: a lower "
            f"rate (train.lr={cfg.train.lr / 2:g})"
        )
    # Against a validation a whole interval back: the last one of a run may follow the one
    # before by a few steps only (the end came between two).
    interval = max(b - a for a, b in zip(steps, steps[1:], strict=False))
    back = max(i for i in range(len(steps) - 1) if steps[-1] - steps[i] >= interval / 2)
    drop = val[back] - val[-1]
    span = steps[-1] - steps[back]
    if drop > NOISE:
        return (
            f"still learning: validation fell by {drop:.3f} in the last {span} steps, to "
            f"{val[-1]:.3f}; more time would pay ({_extend_command(cfg, steps[-1])}), or a "
            "larger model"
        )
    return (
        f"converged: validation moved by {abs(drop):.3f} in the last {span} steps (best "
        f"{val[best]:.3f} at step {steps[best]}); more of the same will not pay, a larger "
        "model or more text might"
    )


def _extend_command(cfg: Config, last_step: int) -> str:
    """The command that gives this run twice its length, whichever limits it has."""
    t = cfg.train
    more = []
    if t.max_seconds is not None:
        more.append(f"train.max_seconds={2 * t.max_seconds:g}")
    if t.max_steps is not None or not more:
        more.append(f"train.max_steps={2 * max(t.max_steps or 0, last_step)}")
    if t.decay_steps is not None:  # past a fixed decay the rate stays at its floor
        more.append(f"train.decay_steps={2 * max(t.decay_steps, last_step)}")
    return f"charlstm train --resume {t.out_dir}" + "".join(f" --set {m}" for m in more)


def _against_memorising(cfg: Config) -> str:
    m, t = cfg.model, cfg.train
    if m.dropout < 0.2:
        return f"model.dropout={max(0.2, m.dropout + 0.1):g}"
    if t.weight_decay < 0.3:
        return "train.weight_decay=0.3"
    return f"a smaller model (model.hidden_size={max(16, m.hidden_size // 2)}) or more text"
