"""A schedule that fits a time budget: how many steps `train.max_seconds` allows.

With `train.max_seconds` set and no `train.decay_steps`, the cosine decays over the
steps the budget allows on this machine, not over a count chosen by hand for another
one. The run measures its own steps, fixes the count, and ends there, at the rate's
floor, with the last validation and save inside the budget:

- after FIT_AFTER steps (the first few warm caches and kernels and are not counted), it
  measures FIT_STEPS steps per second (wall clock: logging and checkpoints included,
  validations left out), estimates one validation's time, and fixes
      steps left = (time left - one validation) * rate / (1 + rate * validation / eval_every)
  (each eval_every steps cost one validation; END_RESERVE of the budget is kept for the
  final save), times SAFETY;
- at each validation and each checkpoint it fits again, with the time validations
  really took and the rate measured since, so another job starting on the machine
  moves the end, not the budget;
- the count in force is recorded in every checkpoint: the rate is a pure function of
  (step, count), so a resumed run follows the recorded schedule exactly, and it re-fits
  only where an uninterrupted run would (at validations and checkpoints), or at its
  start when the budget or the step cap was changed (a run extended by `--resume
  --set train.max_seconds=...` or `train.max_steps=...` measures itself anew and goes
  on: the recorded count, met already, no longer ends it).
`train.max_seconds` stays a hard stop in any case, on the wall clock from the first
step: no step starts that the last few steps say would end past it, every validation
stops scoring at it, the log sample too, and a last validation runs only with time left
for it; `train.max_steps`, when set, caps the count.
"""

from __future__ import annotations

import math
import statistics

from charlstm.config import TrainConfig

FIT_AFTER = 5  # steps left out of the first measurement
FIT_STEPS = 20  # steps measured before the first fit
SAFETY = 0.985  # of the estimated steps: the end falls just inside the budget
# Of the budget, kept for what follows the last step besides the final validation (the
# last save waited for, the event files closed) and for the noise of a shared machine.
END_RESERVE = 0.02
# Before the first validation is timed: validation reads characters about this many
# times faster than training does (a forward pass only, many streams).
EVAL_SPEEDUP = 3.0


class StepTimes:
    """The last few training steps' seconds: what the next one is expected to take (their
    median: one slow step is noise, several are a busy machine). The first step counts
    too: on a machine whose other work starves this one's threads, it is as slow as the
    next (seconds where an idle machine takes milliseconds)."""

    def __init__(self, kept: int = 3):
        self.kept, self.seconds = kept, []

    def add(self, seconds: float) -> None:
        self.seconds = (self.seconds + [seconds])[-self.kept :]

    def expected(self) -> float:
        return statistics.median(self.seconds) if self.seconds else 0.0


def fits_budget(cfg: TrainConfig) -> bool:
    return cfg.max_seconds is not None and cfg.decay_steps is None


class Budget:
    """The step count of a budget run, fitted and re-fitted as the docstring says."""

    def __init__(
        self,
        cfg: TrainConfig,
        val_chars: int,
        chars_per_step: int,
        recorded: int | None,
        refit: bool,
    ):
        self.cfg = cfg
        self.val_chars = val_chars  # what one validation scores
        self.chars_per_step = chars_per_step
        self.total = recorded  # the count in force (None: not fitted yet)
        self.first_fit_pending = recorded is None or refit
        self.first_step: int | None = None
        self.since: tuple[int, float, float] | None = None  # step, elapsed, validation s
        self.validations: list[float] = []

    def after_step(self, step: int, elapsed: float) -> bool:
        """Start measuring once the first steps are behind; fit when enough were measured
        (if this process must fit at all). True when it fitted: at the same step on every
        rank, which then agree on the main rank's count."""
        if self.first_step is None:
            self.first_step = step - 1
        if self.since is None and step - self.first_step >= FIT_AFTER:
            self.since = (step, elapsed, sum(self.validations))
        if self.first_fit_pending and self.since and step - self.since[0] >= FIT_STEPS:
            self.first_fit_pending = False
            self.fit(step, elapsed)
            return True
        return False

    def after_validation(self, seconds: float) -> None:
        self.validations.append(seconds)

    def refit(self, step: int, elapsed: float) -> bool:
        """At a validation or a checkpoint: fit again with all measured so far."""
        if self.since is not None and step > self.since[0] and not self.first_fit_pending:
            self.fit(step, elapsed)
            return True
        return False

    def fit(self, step: int, elapsed: float) -> None:
        since_step, since_elapsed, since_validations = self.since
        training = elapsed - since_elapsed - (sum(self.validations) - since_validations)
        rate = (step - since_step) / max(training, 1e-9)  # steps per second, all included
        if self.validations:
            validation = sum(self.validations) / len(self.validations)
        else:
            validation = self.val_chars / (EVAL_SPEEDUP * rate * self.chars_per_step)
        budget = self.cfg.max_seconds * (1.0 - END_RESERVE)
        left = max(0.0, budget - elapsed - validation)
        steps_left = left * rate / (1.0 + rate * validation / self.cfg.eval_every)
        total = step + math.floor(steps_left * SAFETY)
        if self.cfg.max_steps is not None:
            total = min(total, self.cfg.max_steps)
        self.total = max(total, step + 1, self.cfg.warmup_steps + 1)

    def done(self, step: int) -> bool:
        # A count waiting to be fitted again is the old budget's: it does not end the run.
        return self.total is not None and not self.first_fit_pending and step >= self.total


def what_ended(
    cfg: TrainConfig,
    step: int,
    elapsed: float,
    budget: Budget | None,
    stop: str | None,
    next_step: float = 0.0,
) -> str | None:
    """Which limit ends the run here, in words for its last line (the first that holds);
    None while none does. The trainer asks it between steps; `next_step` is how long the
    next step is expected to take (one that would end past train.max_seconds does not
    start)."""
    if stop is not None:
        return stop
    if cfg.max_steps is not None and step >= cfg.max_steps:
        return f"train.max_steps={cfg.max_steps} reached"
    if budget is not None and budget.done(step):
        return f"the {budget.total:,} steps train.max_seconds={cfg.max_seconds:g} allows here"
    if cfg.max_seconds is not None and elapsed + next_step >= cfg.max_seconds:
        return f"train.max_seconds={cfg.max_seconds:g} spent"
    return None
