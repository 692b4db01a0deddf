"""The training loop: truncated BPTT with carried state, AdamW with warm-up and cosine
decay, clipping, validation, atomic checkpoints, TensorBoard and progress.

Everything a resumed run needs is in last.pt (weights, optimizer, step, carried state,
RNG states), and the schedule is a pure function of the step, so a run stopped and
resumed produces the same parameters as one that never stopped.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console

from charlstm import checkpoint as ckpt
from charlstm.checkpoint import Checkpoint
from charlstm.config import Config
from charlstm.data.corpus import Corpus, in_vocab, load_corpus
from charlstm.device import check_bf16_runs, pick_device, seed_everything, training_precision
from charlstm.errors import CharlstmError, CheckpointError, ConfigError
from charlstm.generate.run import generate
from charlstm.interrupt import Interrupted, StopRequests, cancelled_by, interrupted
from charlstm.memory import amount, available_bytes, check_training_fits, parameter_count
from charlstm.model import (
    CharRNN,
    State,
    bits_per_char,
    detach_state,
    keep_if,
    state_from_tensors,
    state_tensors,
)
from charlstm.options import SampleSettings
from charlstm.rundir import BEST, LAST, RunDir
from charlstm.training.auto import apply as apply_choice
from charlstm.training.auto import check_auto, choose, facts_of, left_to_choose
from charlstm.training.averaging import WeightAverage
from charlstm.training.batches import IGNORED
from charlstm.training.budget import Budget, StepTimes, fits_budget, what_ended
from charlstm.training.data import training_data
from charlstm.training.distributed import Ranks
from charlstm.training.finetune import Base, grown_weights, load_base, with_model_of
from charlstm.training.guard import Guard, diagnose, keep_numbered, numbered_name, stop_for_patience
from charlstm.training.monitor import RunWriter, TrainMeter
from charlstm.training.optim import (
    MuonAndAdamW,
    decay_groups,
    fused_optimizer_state,
    lr_at,
    make_optimizer,
    regrouped_optimizer_state,
)
from charlstm.training.progress import TrainingProgress
from charlstm.training.resume import check_resumable
from charlstm.training.runlock import RunLock


@dataclass(frozen=True)
class TrainSummary:
    steps: int
    best_val_loss: float
    last_val_loss: float
    out_dir: Path
    seconds: float
    last_step_started: float  # seconds into training when the last step began
    diagnosis: str = ""  # how the run went (training/guard.py)
    stopped_early: bool = False  # ended before its limits (train.patience, a pruned trial)
    ended_by: str = ""  # what ended it, in words (the summary line says it)


@dataclass
class _Live:
    """What one call of `run` holds open: TensorBoard, the progress display, the speed
    meter, and the clock (training time includes the runs this one resumes) with
    train.max_seconds as a deadline on it."""

    writer: RunWriter
    progress: TrainingProgress
    meter: TrainMeter
    elapsed_before: float
    clock: Callable[[], float] = time.perf_counter
    max_seconds: float | None = None
    started: float = field(default=None)

    def __post_init__(self) -> None:
        self.started = self.clock()

    def this_run(self) -> float:
        return self.clock() - self.started

    def elapsed(self) -> float:
        return self.elapsed_before + self.this_run()

    def seconds_left(self) -> float:
        return math.inf if self.max_seconds is None else self.max_seconds - self.elapsed()

    def time_up(self) -> bool:
        return self.seconds_left() <= 0

    def stop_when(self) -> Callable[[], bool] | None:
        """What cuts work short at the deadline (None: there is none)."""
        return None if self.max_seconds is None else self.time_up


class Trainer:
    """Set up from a config (one `_setup_*` method per component, in order), then `run`.
    `resume` is the checkpoint of the run to continue."""

    def __init__(
        self,
        cfg: Config,
        resume: Checkpoint | None = None,
        console: Console | None = None,
        quiet: bool = False,
        overwrite: bool = False,
    ):
        self.cfg = cfg
        self.console = console or Console()
        self.quiet = quiet
        self.overwrite = overwrite
        self._setup_process()
        self.run_dir = RunDir(cfg.train.out_dir)
        self.out_dir = self.run_dir.root
        # Taken before anything in out_dir is read or removed (--overwrite).
        self.lock = RunLock(self.run_dir) if self.is_main else None
        try:
            if cfg.train.auto and resume is None:
                check_auto(cfg, bool(cfg.train.init_from), self.ranks.active)
            self._refuse_to_replace_a_run(resume)
            corpus = self._setup_corpus()
            base = self._setup_vocab(corpus, resume)
            self._setup_auto(corpus, resume)
            self._setup_data(corpus)
            self._setup_model(base)
            self._setup_optimizer()
            self._setup_counters()
            self._setup_budget(resume)
            if resume is not None:
                self._restore(resume)
        except BaseException:
            self._release_lock(abandoned=True)  # a run that never began leaves no folder
            raise

    # -- set-up, one component each ----------------------------------------------------
    # What training time is measured by (a test may give a clock of its own).
    clock: Callable[[], float] = staticmethod(time.perf_counter)
    # Told (step, validation loss, validations so far) after each validation; what it
    # returns, if anything, is a reason to stop (charlstm tune prunes a trial this way).
    on_validation: Callable[[int, float, int], str | None] | None = None

    def _setup_process(self) -> None:
        """Threads, the process group under torchrun, the device and the seeds."""
        t = self.cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.ranks = Ranks()
        self.device = self.ranks.start(pick_device(t.device, "train.device"))
        self.is_main = self.ranks.is_main
        # Rank 0 draws exactly what a single process would; other ranks their own dropout.
        seed_everything(t.seed + self.ranks.rank)

    def _refuse_to_replace_a_run(self, resume: Checkpoint | None) -> None:
        if self.is_main and resume is None and self.run_dir.holds_run() and not self.overwrite:
            raise CheckpointError(
                f"{self.out_dir} already holds a run ({self.run_dir.last}): resume it with "
                f"--resume {self.out_dir}, pick another train.out_dir, or pass --overwrite"
            )

    def _setup_corpus(self) -> Corpus:
        shown = self.console if self.is_main else Console(quiet=True)
        started = time.perf_counter()
        corpus = self.ranks.main_first(lambda: load_corpus(self.cfg.data, shown, self.quiet))
        self.corpus_seconds = time.perf_counter() - started
        self.corpus_key = corpus.key
        self.corpus_skipped = corpus.skipped
        return corpus

    def _setup_vocab(self, corpus: Corpus, resume: Checkpoint | None) -> Base | None:
        """The vocabulary (the corpus's, the resumed run's, or a fine-tune's grown from its
        base), and the base model of a fine-tune (see finetune.py)."""
        base = None
        if self.cfg.train.init_from:  # resumed: as the saved run was
            if resume is None:
                base = load_base(self.cfg.train.init_from)
                source = f"train.init_from {base.path}"
                self.cfg = with_model_of(self.cfg, base.model, source)
            else:
                self.cfg = with_model_of(self.cfg, resume.config.model, "the run")
        if resume is not None:
            self.vocab = resume.vocab
        elif base is not None:
            self.vocab = base.vocab.grown_by(corpus.vocab)
        else:
            self.vocab = corpus.vocab
        return base

    def _setup_auto(self, corpus: Corpus, resume: Checkpoint | None) -> None:
        """train.auto: the model and schedule chosen for this corpus, device and budget
        (auto.py) before anything is built from them; a resumed run keeps its own."""
        self.auto_note = None
        if not self.cfg.train.auto or resume is not None or not left_to_choose(self.cfg):
            return
        choice = choose(facts_of(corpus.ids, self.vocab, self.cfg, self.device))
        self.cfg = apply_choice(self.cfg, choice)
        self.auto_note = f"auto: {choice.reason}; corpus read in {self.corpus_seconds:.1f} s"

    def _setup_data(self, corpus: Corpus) -> None:
        """The training streams of this rank and what validation scores."""
        corpus = in_vocab(corpus, self.vocab, self.cfg.data)
        self.vocab = corpus.vocab
        streams = self.ranks.my_streams(self.cfg.train.batch_size)
        self.local_batch = streams.stop - streams.start
        self.data = training_data(corpus, self.cfg, self.device, streams)

    def _setup_model(self, base: Base | None) -> None:
        """The model on its device, what training steps call (DDP's wrapper under
        torchrun), the weight average and the precision."""
        t = self.cfg.train
        check_training_fits(self.vocab.size, self.cfg, self.local_batch, self.device)
        try:
            self.model = CharRNN(self.vocab.size, self.cfg.model)
        except (RuntimeError, MemoryError):  # the estimate let it through; the allocator not
            free = available_bytes(self.device)
            raise ConfigError(
                f"config: the model does not fit in memory "
                f"({parameter_count(self.vocab.size, self.cfg.model):,} parameters"
                + (f", {amount(free)} free" if free is not None else "")
                + "): lower model.hidden_size or model.num_layers"
            ) from None
        if base is not None:
            self.model.load_state_dict(grown_weights(base, self.vocab, self.model))
        self.model.to(self.device)
        self.net = self.ranks.wrap(self.model, self.device)
        if self.device.type == "cuda":  # TF32 for the decoder's matmuls too, as cuDNN's RNNs
            torch.set_float32_matmul_precision("high")
        self.average = WeightAverage(self.model, t.ema) if t.ema is not None else None
        self.precision = training_precision(t.precision, self.device)
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else nullcontext()
        )
        if self.precision == "bf16":
            check_bf16_runs(self.model, self.device, self.cfg.train.precision, self.cfg.model.cell)

    def _setup_optimizer(self) -> None:
        t = self.cfg.train
        self.param_groups = decay_groups(self.model, t.weight_decay)
        self.optimizer = make_optimizer(self.model, t, self.param_groups)
        self.checkpoints = ckpt.CheckpointWriter()

    def _setup_counters(self) -> None:
        """Where a fresh run starts; a resumed one overwrites these from its checkpoint."""
        self.step = 0
        self.state = None
        self.best_val_loss = math.inf
        self.last_val_loss = math.nan
        self.elapsed_before = 0.0  # training seconds spent by earlier runs of this training
        self.skipped_updates = 0
        self.history: list[list[float]] = []  # [step, training loss, validation loss]
        self.last_train_loss = math.nan
        self.stop_reason: str | None = None  # why the run ends before its limits
        self.diagnosis = ""
        self.step_times = StepTimes()  # what the next step is expected to take
        self.guard = Guard(self.cfg.train, self.model, self.optimizer, self.average,
                           kept=self.run_dir.checkpoint_files)  # fmt: skip
        self._unread_skip: tuple[int, torch.Tensor] | None = None
        self.resume_changes: list[str] = []

    def _setup_budget(self, resume: Checkpoint | None) -> None:
        """The step count fitted to train.max_seconds (see budget.py), if it decides the
        schedule: recorded in the checkpoint, fitted anew when the budget changed."""
        t = self.cfg.train
        self.budget = None
        if not fits_budget(t):
            return
        recorded = resume.schedule_steps if resume is not None else None
        old = resume.config.train if resume is not None else t  # a new budget or cap: refit
        changed = (old.max_seconds, old.max_steps) != (t.max_seconds, t.max_steps)
        chars_per_step = self.data.batches.chars_per_window * self.ranks.world
        self.budget = Budget(t, self.data.val_chars, chars_per_step, recorded, refit=changed)

    def _release_lock(self, abandoned: bool = False) -> None:
        if self.lock is not None:
            self.lock.release(abandoned)

    # -- checkpoints -------------------------------------------------------------------
    def _restore(self, saved: Checkpoint) -> None:
        self.resume_changes = check_resumable(saved, self.cfg, self.vocab, self.corpus_key)
        self.model.load_state_dict(saved.model)
        if self.average is not None:  # a run that kept none starts its average here
            self.average.load_state_dict(saved.inference_weights)
        if isinstance(self.optimizer, MuonAndAdamW):
            self.optimizer.load_state_dict(saved.optimizer)
        else:
            layout = regrouped_optimizer_state(saved.optimizer, self.model, self.param_groups)
            self.optimizer.load_state_dict(fused_optimizer_state(layout))
            for group, mine in zip(self.optimizer.param_groups, self.param_groups, strict=True):
                group["weight_decay"] = mine["weight_decay"]  # loading restored the saved value
        self.step = saved.step
        cell = self.cfg.model.cell
        if saved.state:  # saved for all streams; this rank carries its own
            full = state_from_tensors([s.to(self.device) for s in saved.state], cell)
            self.state = self.ranks.my_state(full, self.cfg.train.batch_size, cell)
        self.best_val_loss = float(saved.best_val_loss)
        self.last_val_loss = float(saved.last_val_loss)
        self.elapsed_before = float(saved.elapsed_seconds)
        self.history = [list(entry) for entry in saved.history]
        self.guard.lr_scale, self.guard.rollbacks = float(saved.lr_scale), int(saved.rollbacks)
        if len(saved.rank_rngs) == self.ranks.world:
            ckpt.restore_rng(saved.rank_rngs[self.ranks.rank])
        else:  # another world size: the state carries on, the dropout streams start anew
            seed_everything(self.cfg.train.seed + self.ranks.rank + self.step)

    def _checkpoint(self, elapsed: float, state: State | None, rngs: list[dict]) -> Checkpoint:
        return Checkpoint(
            config=self.cfg,
            vocab=self.vocab,
            model=self.model.state_dict(),
            step=self.step,
            optimizer=self.optimizer.state_dict(),
            averaged_model=self.average.state_dict() if self.average is not None else None,
            # the writer copies every tensor to the host, detached, as it queues the save
            state=state_tensors(state) if state is not None else [],
            rank_rngs=rngs,
            corpus_key=self.corpus_key,
            best_val_loss=self.best_val_loss,
            last_val_loss=self.last_val_loss,
            elapsed_seconds=elapsed,
            schedule_steps=self.budget_steps,
            history=self.history,
            lr_scale=self.guard.lr_scale,
            rollbacks=self.guard.rollbacks,
        )

    def save(self, name: str, elapsed: float) -> Path:
        """Every rank takes part (the carried state and RNG states are gathered); the
        main rank writes."""
        state = None
        if self.state is not None:
            state = self.ranks.gather_state(self.state, self.cfg.model.cell)
        rngs = self.ranks.gather_objects(ckpt.capture_rng())
        path = self.run_dir.checkpoints / name
        if self.is_main:
            if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                raise CharlstmError(f"refusing to save {name}: the weights are not finite")
            self.checkpoints.write(path, self._checkpoint(elapsed, state, rngs).to_payload())
        return path

    # -- one step ----------------------------------------------------------------------
    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One TBPTT window: returns (loss, grad norm, skipped) as device tensors.

        A non-finite loss or gradient skips the update on the device itself (fused AdamW
        reads `found_inf`, as under a GradScaler; the carried state keeps its old value),
        so no step waits for the device to finish. The host learns of a skip one step
        later, while the device works on the next window."""
        window = self.data.batches.window(self.step)
        if window.starts_epoch or self.state is None:
            self.state = self.model.init_state(self.local_batch, self.device)
        if window.fresh_rows is not None:  # rows beginning a document start from zero
            self.state = keep_if(
                window.fresh_rows[None, :, None],
                self.model.init_state(self.local_batch, self.device),
                self.state,
            )
        lr = lr_at(self.step, self.cfg.train, self.budget_steps) * self.guard.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            logits, state = self.net(window.inputs, self.state)
        loss = F.cross_entropy(
            logits.float().reshape(-1, self.vocab.size),
            window.targets.reshape(-1),
            ignore_index=IGNORED,
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip = self.cfg.train.grad_clip or math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        # All ranks must take the same decision, or their weights would drift apart.
        skipped = self.ranks.any_on_device(~(torch.isfinite(loss) & torch.isfinite(grad_norm)))
        self.optimizer.found_inf = skipped
        self.optimizer.step()
        if self.average is not None:
            self.average.update(self.step + 1)
        self.state = keep_if(skipped, self.state, detach_state(state))
        self._count_skips(pending=(self.step, skipped))
        self.step += 1
        return loss.detach(), grad_norm.detach(), skipped

    def _count_skips(self, pending: tuple[int, torch.Tensor] | None = None) -> None:
        """Count the skip flag waiting from the step before (reading it waits only for
        that step), then keep `pending` for later. The guard acts on them at the next
        log point."""
        waiting, self._unread_skip = self._unread_skip, pending
        if waiting is not None and waiting[1].item():
            self.skipped_updates += 1

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> TrainSummary:
        """Train until max_steps, max_seconds or the budget says stop, or a signal asks.
        Each pass of the loop is one step and its bookkeeping, in this order."""
        live = self._start()
        finished, last_step_started = False, live.elapsed()
        try:
            with StopRequests() as stop:
                while not self._should_stop(stop, live):  # 1. agreed by every rank
                    last_step_started = live.elapsed()
                    live.meter.add(*self.train_step())  # 2. one TBPTT window
                    self.step_times.add(live.elapsed() - last_step_started)
                    self._after_step(live)  # 3. budget, log line, validation, last.pt
                self._finish(live)  # 4. the last validation and last.pt
                finished = True
        finally:
            self._close(live, finished)
        elapsed = live.elapsed()
        ended = self._ended_by(elapsed) or "stopped"
        return TrainSummary(self.step, self.best_val_loss, self.last_val_loss, self.out_dir,
                            elapsed, last_step_started, self.diagnosis,
                            self.stop_reason is not None, ended)  # fmt: skip

    def _start(self) -> _Live:
        """The run folder, TensorBoard, the progress display and the opening lines."""
        m = self.cfg.model
        if self.is_main:
            self._prepare_out_dir()
        self._first_step = self.step
        # A resumed run drops events logged after its checkpoint's step (a crash may have
        # left some): the curves continue without overlapping points.
        purge = self.step + 1 if self.step else None
        writer = RunWriter(self.out_dir, self.cfg, purge_step=purge, enabled=self.is_main)
        console = self.console if self.is_main else Console(quiet=True)
        progress = TrainingProgress(console, quiet=self.quiet)
        progress.message(self.data.note)
        if self.auto_note is not None:
            progress.message(self.auto_note)
        if self.corpus_skipped:
            progress.message(f"the files passed over are listed in {self.run_dir.skipped_file}")
        progress.message(
            f"model: {m.num_layers}x{m.hidden_size} {m.cell}, "
            f"{self.model.num_parameters():,} parameters, on {self.device}"
            + (" in bf16" if self.precision == "bf16" else "")
            + (f" x {self.ranks.world} ranks" if self.ranks.active else "")
            + (f"; resuming at step {self.step}" if self.step else "")
        )
        for change in self.resume_changes:
            progress.message(f"changed on resume: {change}")
        meter = TrainMeter(self.device, self.step)
        self.guard.start(self.step, self.skipped_updates)
        return _Live(writer, progress, meter, self.elapsed_before, clock=self.clock,
                     max_seconds=self.cfg.train.max_seconds)  # fmt: skip

    def _should_stop(self, stop: StopRequests, live: _Live) -> bool:
        """Between steps, and agreed by all ranks: time up (True), or asked to stop (then
        last.pt is saved and the run ends with the signal's exit code)."""
        ended = self._ended_by(live.elapsed()) is not None
        time_up, signalled = self.ranks.any(ended, stop.signum is not None)
        if signalled:
            path = self.save(LAST, live.elapsed())
            self.checkpoints.wait()
            raise stop.interrupted(
                f"stopped after step {self.step}, saved {path}; "
                f"resume with: charlstm train --resume {self.out_dir}"
            )
        return time_up

    def _after_step(self, live: _Live) -> None:
        t = self.cfg.train
        if self.budget is not None and self.budget.after_step(self.step, live.elapsed()):
            self._agree_on_budget()
        if self.step % self.cfg.log.log_every == 0:
            self._log(live)
        validating = self.step % t.eval_every == 0
        saving = self.step % t.checkpoint_every == 0
        if validating:
            started = self.clock()
            self._validate_or_stop(live)
            if self.budget is not None:
                self.budget.after_validation(self.clock() - started)
        if saving:
            self.save(LAST, live.elapsed())
        if validating or saving:  # chars/s measures training alone
            live.meter.restart(self.step)
            # fit again, with all measured so far
            if self.budget is not None and self.budget.refit(self.step, live.elapsed()):
                self._agree_on_budget()

    def _finish(self, live: _Live) -> None:
        """The last validation, when there is time left for it, and last.pt. Like every
        validation it stops scoring at train.max_seconds, having scored at least one
        window, and its log sample stops there too: the deadline holds on a busy machine
        (docs/pages/training.md says by how much)."""
        self._count_skips()
        if self.step % self.cfg.train.eval_every != 0:
            # its first window (always scored) costs about two training steps' forward
            # passes; a run that has not validated yet validates anyway: it ends with a
            # best checkpoint, whatever the machine's load did to its steps
            validated = math.isfinite(self.best_val_loss)
            if validated and live.seconds_left() < 2 * self.step_times.expected():
                live.progress.message("no time left for a last validation (train.max_seconds)")
            else:
                self._validate_or_stop(live)
        self.diagnosis = diagnose(self.history, self.cfg)
        live.progress.message(self.diagnosis)
        live.writer.text("diagnosis", self.diagnosis, self.step)
        self.save(LAST, live.elapsed())
        self.checkpoints.wait()

    def _close(self, live: _Live, finished: bool) -> None:
        """Whatever ended the run: no write is left behind, the process group and the
        lock are released."""
        self.checkpoints.close()
        live.progress.close(self.step if finished else None)
        live.writer.close()
        self.net = self.model  # the DDP wrapper goes before its process group
        self.ranks.stop(finished)
        self._release_lock()

    def _log(self, live: _Live) -> None:
        self._count_skips()  # the log shows every skip so far
        chars_per_step = self.data.batches.chars_per_window * self.ranks.world
        read = live.meter.read(self.step, chars_per_step, self.ranks.mean)
        rolled_back = self.guard.check(
            self.step, read[0] if read is not None else None, self.skipped_updates
        )
        if rolled_back is not None:
            self.state = None  # it came from weights that are gone: start afresh
            live.progress.message(rolled_back)
        if read is None:  # every update since the last line was skipped
            return
        loss, grad_norm, chars_per_sec = read
        self.last_train_loss = loss
        lr = lr_at(self.step - 1, self.cfg.train, self.budget_steps) * self.guard.lr_scale
        live.writer.train_scalars(
            self.step, loss, grad_norm, lr, chars_per_sec, self.skipped_updates,
            self.guard.rollbacks,
        )  # fmt: skip
        fraction, left = self._progress(live.elapsed(), live.this_run())
        stats = f"loss {loss:.3f} bpc {bits_per_char(loss):.3f} {chars_per_sec:,.0f} chars/s"
        live.progress.update(self.step, fraction, left, stats)

    def _ended_by(self, elapsed: float) -> str | None:
        return what_ended(self.cfg.train, self.step, elapsed, self.budget, self.stop_reason,
                          self.step_times.expected())  # fmt: skip

    def _agree_on_budget(self) -> None:
        """Every rank decays over the main rank's count, or their weights would drift."""
        self.budget.total = self.ranks.from_main(self.budget.total)

    @property
    def budget_steps(self) -> int | None:
        """The step count fitted to train.max_seconds, once it is known."""
        return self.budget.total if self.budget is not None else None

    def _progress(self, elapsed: float, this_run: float) -> tuple[float, float | None]:
        """Fraction done and seconds left, by whichever limit comes first."""
        t = self.cfg.train
        fractions, lefts = [], []
        for steps in (t.max_steps, self.budget_steps):
            if steps is not None:
                fractions.append(self.step / steps)
                steps_here = max(1, self.step - self._first_step)
                lefts.append((steps - self.step) * this_run / steps_here)
        if t.max_seconds is not None:
            fractions.append(elapsed / t.max_seconds)
            lefts.append(t.max_seconds - elapsed)
        return (min(1.0, max(fractions)) if fractions else 0.0), (min(lefts) if lefts else None)

    def _validate_or_stop(self, live: _Live) -> None:
        """Validate (scoring until train.max_seconds, if set); a stop requested meanwhile
        ends it early and the run stops as between steps (validation never touches the
        training state, so last.pt is exact)."""
        try:
            self._validate(live)
        except Interrupted:
            path = self.save(LAST, live.elapsed())
            self.checkpoints.wait()
            raise interrupted(
                f"stopped during validation after step {self.step}, saved {path}; "
                f"resume with: charlstm train --resume {self.out_dir}"
            ) from None

    def _validate(self, live: _Live) -> None:
        log = self.cfg.log
        with self.average.applied() if self.average is not None else nullcontext():
            result = self.data.validate(self.model, live.stop_when())
            if self.is_main:  # the one sample of the run's log
                settings = SampleSettings(
                    prime=self.data.sample_prime, length=log.sample_length,
                    temperature=log.sample_temperature, seed=self.step,
                )  # fmt: skip
                text = self._log_sample(settings, live)
        self.last_val_loss = result.loss
        if not result.cut:  # a stretch cut short is not comparable with the others
            self.history.append([self.step, self.last_train_loss, result.loss])
        whole = not result.cut or math.isinf(self.best_val_loss)  # a cut one, while none is
        improved = whole and result.loss < self.best_val_loss
        if improved:  # saved outside the block: a checkpoint's `model` is the raw weights
            self.best_val_loss = result.loss
            self.save(BEST, live.elapsed())
        if self.cfg.train.keep_checkpoints:
            self._keep_numbered(result.loss, live)
        self.stop_reason = stop_for_patience(self.history, self.cfg.train.patience)
        if self.on_validation is not None and self.stop_reason is None:
            self.stop_reason = self.on_validation(self.step, result.loss, len(self.history))
        if not self.is_main:
            return
        live.writer.validation(self.step, result.loss, text)
        live.progress.message(
            f"step {self.step}: val loss {result.loss:.4f} bpc {result.bpc:.4f} "
            f"on {result.chars:,} chars"
            + (" (cut at train.max_seconds)" if result.cut else "")
            + (" (best, saved best.pt)" if improved else "")
        )
        if self.stop_reason is not None:
            live.progress.message(self.stop_reason)

    def _keep_numbered(self, loss: float, live: _Live) -> None:
        name = numbered_name(self.step, loss)
        self.save(name, live.elapsed())
        if self.is_main:
            keep_numbered(self.run_dir.checkpoints, name, self.cfg.train.keep_checkpoints)

    def _log_sample(self, settings: SampleSettings, live: _Live) -> str:
        """The run log's sample: one text, or eight short documents of a document model;
        none when train.max_seconds comes first (a sample of one-character steps can take
        seconds on a busy machine)."""
        count = 8 if self.vocab.documents else 1
        left = live.seconds_left()
        if left <= 0:
            return ""
        deadline = threading.Event()
        timer = threading.Timer(left, deadline.set) if math.isfinite(left) else None
        try:
            if timer is not None:
                timer.start()
            with cancelled_by(deadline):
                made = generate(self.model, self.vocab, replace(settings, num_samples=count))
            return "\n".join(made.texts)
        except Interrupted:
            if not deadline.is_set():
                raise  # a signal: the run stops
            return ""
        finally:
            if timer is not None:
                timer.cancel()

    def _prepare_out_dir(self) -> None:
        try:
            if self.overwrite and self.step == 0:  # a fresh start: no stale curves or weights
                for old in [*self.run_dir.event_files(), *self.run_dir.checkpoint_files()]:
                    old.unlink()
            self.run_dir.checkpoints.mkdir(parents=True, exist_ok=True)
            self.cfg.write_yaml(self.run_dir.config_file)
            if self.corpus_skipped:
                listed = "".join(f"{s.reason}\t{s.shown}\n" for s in self.corpus_skipped)
                self.run_dir.skipped_file.write_text(listed, encoding="utf-8")
        except OSError as err:
            raise CheckpointError(
                f"train.out_dir {self.out_dir} is not writable: {err.strerror or err}"
            ) from None
