"""The training loop: truncated BPTT with carried state, AdamW with warm-up and cosine
decay, clipping, validation, atomic checkpoints, TensorBoard and progress.

Everything a resumed run needs is in last.pt (weights, optimizer, step, carried state,
RNG states), and the schedule is a pure function of the step, so a run stopped and
resumed produces the same parameters as one that never stopped.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console

from charlstm import checkpoint as ckpt
from charlstm.config import Config, TrainConfig
from charlstm.corpus import in_vocab, load_corpus
from charlstm.device import pick_device, seed_everything, training_precision
from charlstm.errors import CharlstmError, CheckpointError, ConfigError
from charlstm.evaluate import evaluate_ids
from charlstm.interrupt import Interrupted, StopRequests, interrupted
from charlstm.model import (
    CharRNN,
    State,
    detach_state,
    keep_if,
    state_from_tensors,
    state_tensors,
)
from charlstm.options import SampleSettings
from charlstm.sample import generate
from charlstm.training.averaging import WeightAverage
from charlstm.training.batches import TBPTTBatches
from charlstm.training.budget import Budget, fits_budget
from charlstm.training.distributed import Ranks
from charlstm.training.finetune import grown_weights, load_base, with_model_of
from charlstm.training.monitor import RunWriter, TrainMeter
from charlstm.training.progress import TrainingProgress
from charlstm.training.resume import check_resumable
from charlstm.training.runlock import RunLock
from charlstm.vocab import Vocab


@dataclass(frozen=True)
class TrainSummary:
    steps: int
    best_val_loss: float
    last_val_loss: float
    out_dir: Path
    seconds: float


def lr_at(step: int, cfg: TrainConfig, budget_steps: int | None = None) -> float:
    """Linear warm-up, then cosine decay to lr * final_lr_fraction: a pure function of the
    step (and, for a time budget, of the step count fitted to it: see budget.py)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    decay_steps = cfg.decay_steps or budget_steps or cfg.max_steps
    if decay_steps is None:
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, decay_steps - cfg.warmup_steps))
    floor = cfg.lr * cfg.final_lr_fraction
    return floor + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - floor)


def fused_optimizer_state(saved: dict[str, Any]) -> dict[str, Any]:
    """An AdamW state dict set to load as the fused optimizer, whatever it was saved as
    (loading keeps the saved group options, and only the fused kernel skips on the
    device); its step counters then move to the parameters' device, as fused needs."""
    groups = [{**g, "fused": True, "foreach": None} for g in saved["param_groups"]]
    return {**saved, "param_groups": groups}


class Trainer:
    def __init__(
        self,
        cfg: Config,
        resume: dict[str, Any] | None = None,
        console: Console | None = None,
        quiet: bool = False,
        overwrite: bool = False,
    ):
        self.cfg = cfg
        self.console = console or Console()
        self.quiet = quiet
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.ranks = Ranks()
        self.device = self.ranks.start(pick_device(t.device, "train.device"))
        self.is_main = self.ranks.is_main
        # Rank 0 draws exactly what a single process would; other ranks their own dropout.
        seed_everything(t.seed + self.ranks.rank)
        self.out_dir = Path(t.out_dir)
        self.ckpt_dir = ckpt.checkpoint_dir(self.out_dir)
        self.overwrite = overwrite
        # Taken before anything in out_dir is read or removed (--overwrite).
        self.lock = RunLock(self.out_dir) if self.is_main else None
        try:
            self._set_up(resume, quiet)
        except BaseException:
            self._release_lock()
            raise

    def _set_up(self, resume: dict[str, Any] | None, quiet: bool) -> None:
        cfg, t = self.cfg, self.cfg.train
        previous_run = self.ckpt_dir / ckpt.LAST
        if self.is_main and resume is None and previous_run.exists() and not self.overwrite:
            raise CheckpointError(
                f"{self.out_dir} already holds a run ({previous_run}): resume it with "
                f"--resume {self.out_dir}, pick another train.out_dir, or pass --overwrite"
            )

        shown = self.console if self.is_main else Console(quiet=True)
        corpus = self.ranks.main_first(lambda: load_corpus(cfg.data, shown, quiet))
        self.corpus_key = corpus.key
        base = None
        if t.init_from:  # fine-tuning (see finetune.py); resumed: as the saved run was
            if resume is None:
                base = load_base(t.init_from)
                cfg = with_model_of(cfg, base.model, f"train.init_from {base.path}")
                vocab = base.vocab.grown_by(corpus.vocab)
            else:
                cfg = with_model_of(cfg, Config.from_dict(resume["config"]).model, "the run")
            self.cfg = cfg
        if resume is not None:
            vocab = Vocab.from_dict(resume["vocab"])
        elif base is None:
            vocab = corpus.vocab
        corpus = in_vocab(corpus, vocab, cfg.data)
        self.vocab = corpus.vocab
        _check_sample_prime(cfg.log.sample_prime, self.vocab)
        train_ids, val_ids = corpus.split(cfg.data.val_fraction)
        # The same stretch every time (see TrainConfig.eval_chars); +1: targets of the last.
        self.val_ids = val_ids[: t.eval_chars + 1] if t.eval_chars else val_ids
        streams = self.ranks.my_streams(t.batch_size)
        self.local_batch = streams.stop - streams.start
        self.batches = TBPTTBatches(train_ids, t.batch_size, t.bptt, self.device, streams)
        self.corpus_note = (
            f"{corpus.source}: {len(corpus.ids):,} chars in {corpus.num_files} file(s), "
            f"vocab {self.vocab.size} ({self.vocab.mode}), {len(train_ids):,} train / "
            f"{len(val_ids):,} val"
        )
        self.model = CharRNN(self.vocab.size, cfg.model)
        if base is not None:
            self.model.load_state_dict(grown_weights(base, self.vocab, self.model))
        self.model.to(self.device)
        self.net = self.ranks.wrap(self.model, self.device)  # what training steps call
        # fused: one kernel for all parameters, and it can skip an update on the device
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay, fused=True
        )
        if self.device.type == "cuda":  # TF32 for the decoder's matmuls too, as cuDNN's RNNs
            torch.set_float32_matmul_precision("high")
        self.average = WeightAverage(self.model, t.ema) if t.ema is not None else None
        self.precision = training_precision(t.precision, self.device)
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.precision == "bf16"
            else nullcontext()
        )
        self.checkpoints = ckpt.CheckpointWriter()
        self.step = 0
        self.state = None
        self.best_val_loss = math.inf
        self.last_val_loss = math.nan
        self.elapsed_before = 0.0  # training seconds spent by earlier runs of this training
        self.nonfinite_in_row = 0
        self.skipped_updates = 0
        self._unread_skip: tuple[int, torch.Tensor] | None = None
        self.resume_changes: list[str] = []
        self.budget = None
        if fits_budget(t):
            recorded = resume.get("schedule_steps") if resume is not None else None
            budget_changed = resume is not None and (
                Config.from_dict(resume["config"]).train.max_seconds != t.max_seconds
            )
            chars_per_step = self.batches.chars_per_window * self.ranks.world
            val_chars = len(self.val_ids) - 1
            self.budget = Budget(t, val_chars, chars_per_step, recorded, refit=budget_changed)
        if resume is not None:
            self._restore(resume)

    def _release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # -- checkpoints -------------------------------------------------------------------
    def _restore(self, payload: dict[str, Any]) -> None:
        self.resume_changes = check_resumable(payload, self.cfg, self.vocab, self.corpus_key)
        self.model.load_state_dict(payload["model"])
        if self.average is not None:  # a run that kept none starts its average here
            self.average.load_state_dict(ckpt.inference_weights(payload))
        self.optimizer.load_state_dict(fused_optimizer_state(payload["optimizer"]))
        for group in self.optimizer.param_groups:  # loading restored the saved value
            group["weight_decay"] = self.cfg.train.weight_decay
        self.step = int(payload["step"])
        cell = self.cfg.model.cell
        if payload["state"]:  # saved for all streams; this rank carries its own
            full = state_from_tensors([s.to(self.device) for s in payload["state"]], cell)
            self.state = self.ranks.my_state(full, self.cfg.train.batch_size, cell)
        self.best_val_loss = float(payload["best_val_loss"])
        self.last_val_loss = float(payload.get("last_val_loss", math.nan))
        self.elapsed_before = float(payload["elapsed_seconds"])
        rank_rngs = payload.get("rank_rngs") or [payload["rng"]]
        if len(rank_rngs) == self.ranks.world:
            ckpt.restore_rng(rank_rngs[self.ranks.rank])
        else:  # another world size: the state carries on, the dropout streams start anew
            seed_everything(self.cfg.train.seed + self.ranks.rank + self.step)

    def _payload(self, elapsed: float, state: State | None, rngs: list[dict]) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "averaged_model": self.average.state_dict() if self.average is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            # the writer copies every tensor to the host, detached, as it queues the save
            "state": state_tensors(state) if state is not None else [],
            "rng": rngs[0],
            "rank_rngs": rngs,
            "vocab": self.vocab.to_dict(),
            "corpus_key": self.corpus_key,
            "config": self.cfg.to_dict(),
            "best_val_loss": self.best_val_loss,
            "last_val_loss": self.last_val_loss,
            "elapsed_seconds": elapsed,
            "schedule_steps": self.budget_steps,
        }

    def save(self, name: str, elapsed: float) -> Path:
        """Every rank takes part (the carried state and RNG states are gathered); the
        main rank writes."""
        state = None
        if self.state is not None:
            state = self.ranks.gather_state(self.state, self.cfg.model.cell)
        rngs = self.ranks.gather_objects(ckpt.capture_rng())
        path = self.ckpt_dir / name
        if self.is_main:
            if not all(torch.isfinite(p).all() for p in self.model.parameters()):
                raise CharlstmError(f"refusing to save {name}: the weights are not finite")
            self.checkpoints.write(path, self._payload(elapsed, state, rngs))
        return path

    # -- one step ----------------------------------------------------------------------
    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One TBPTT window: returns (loss, grad norm, skipped) as device tensors.

        A non-finite loss or gradient skips the update on the device itself (fused AdamW
        reads `found_inf`, as under a GradScaler; the carried state keeps its old value),
        so no step waits for the device to finish. The host learns of a skip one step
        later, while the device works on the next window."""
        window = self.batches.window(self.step)
        if window.starts_epoch or self.state is None:
            self.state = self.model.init_state(self.local_batch, self.device)
        lr = lr_at(self.step, self.cfg.train, self.budget_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            logits, state = self.net(window.inputs, self.state)
        loss = F.cross_entropy(
            logits.float().reshape(-1, self.vocab.size), window.targets.reshape(-1)
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
        that step), then keep `pending` for later. Too many in a row stop training."""
        waiting, self._unread_skip = self._unread_skip, pending
        if waiting is None:
            return
        step, skipped = waiting
        if not skipped.item():
            self.nonfinite_in_row = 0
            return
        self.skipped_updates += 1
        self.nonfinite_in_row += 1
        if self.nonfinite_in_row >= self.cfg.train.max_nonfinite:
            raise CharlstmError(
                f"{self.nonfinite_in_row} non-finite losses or gradients in a row at step "
                f"{step}: lower train.lr or train.grad_clip "
                "(last.pt holds the last good weights)"
            )

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> TrainSummary:
        t, log, m = self.cfg.train, self.cfg.log, self.cfg.model
        if self.is_main:
            self._prepare_out_dir()
        self._first_step = self.step
        # A resumed run drops events logged after its checkpoint's step (a crash may have
        # left some): the curves continue without overlapping points.
        purge = self.step + 1 if self.step else None
        writer = RunWriter(self.out_dir, self.cfg, purge_step=purge, enabled=self.is_main)
        finished = False
        console = self.console if self.is_main else Console(quiet=True)
        progress = TrainingProgress(console, quiet=self.quiet)
        progress.message(self.corpus_note)
        progress.message(
            f"model: {m.num_layers}x{m.hidden_size} {m.cell}, "
            f"{self.model.num_parameters():,} parameters, on {self.device}"
            + (" in bf16" if self.precision == "bf16" else "")
            + (f" x {self.ranks.world} ranks" if self.ranks.active else "")
            + (f"; resuming at step {self.step}" if self.step else "")
        )
        for change in self.resume_changes:
            progress.message(f"changed on resume: {change}")
        started = time.perf_counter()
        elapsed = lambda: self.elapsed_before + time.perf_counter() - started  # noqa: E731
        meter = TrainMeter(self.device, self.step)
        try:
            with StopRequests() as stop:
                while True:
                    # Between steps, and agreed by all ranks: time up, or asked to stop.
                    time_up, signalled = self.ranks.any(
                        self._done(elapsed()), stop.signum is not None
                    )
                    if signalled:
                        path = self.save(ckpt.LAST, elapsed())
                        self.checkpoints.wait()
                        raise stop.interrupted(
                            f"stopped after step {self.step}, saved {path}; "
                            f"resume with: charlstm train --resume {self.out_dir}"
                        )
                    if time_up:
                        break
                    loss, grad_norm, skipped = self.train_step()
                    meter.add(loss, grad_norm, skipped)
                    if self.budget is not None and self.budget.after_step(self.step, elapsed()):
                        self._agree_on_budget()
                    if self.step % log.log_every == 0:
                        self._log(meter, writer, progress, elapsed(), time.perf_counter() - started)
                    validating = self.step % t.eval_every == 0
                    saving = self.step % t.checkpoint_every == 0
                    if validating:
                        started_validation = time.perf_counter()
                        self._validate_or_stop(writer, progress, elapsed())
                        if self.budget is not None:
                            self.budget.after_validation(time.perf_counter() - started_validation)
                    if saving:
                        self.save(ckpt.LAST, elapsed())
                    if validating or saving:  # chars/s measures training alone
                        meter.restart(self.step)
                        # fit again, with all measured so far
                        if self.budget is not None and self.budget.refit(self.step, elapsed()):
                            self._agree_on_budget()
                self._count_skips()
                if self.step % t.eval_every != 0:
                    self._validate_or_stop(writer, progress, elapsed())
                self.save(ckpt.LAST, elapsed())
                self.checkpoints.wait()
                finished = True
        finally:
            self.checkpoints.close()  # no write is left behind, whatever ended the run
            progress.close()
            writer.close()
            self.net = self.model  # the DDP wrapper goes before its process group
            self.ranks.stop(finished)
            self._release_lock()
        return TrainSummary(
            self.step, self.best_val_loss, self.last_val_loss, self.out_dir, elapsed()
        )

    def _log(
        self,
        meter: TrainMeter,
        writer: RunWriter,
        progress: TrainingProgress,
        elapsed: float,
        this_run: float,
    ) -> None:
        self._count_skips()  # the log shows every skip so far
        chars_per_step = self.batches.chars_per_window * self.ranks.world
        read = meter.read(self.step, chars_per_step, self.ranks.mean)
        if read is None:  # every update since the last line was skipped
            return
        loss, grad_norm, chars_per_sec = read
        lr = lr_at(self.step - 1, self.cfg.train, self.budget_steps)
        writer.train_scalars(self.step, loss, grad_norm, lr, chars_per_sec, self.skipped_updates)
        fraction, left = self._progress(elapsed, this_run)
        stats = f"loss {loss:.3f} bpc {loss / math.log(2):.3f} {chars_per_sec:,.0f} chars/s"
        progress.update(self.step, fraction, left, stats)

    def _done(self, elapsed: float) -> bool:
        t = self.cfg.train
        return (
            (t.max_steps is not None and self.step >= t.max_steps)
            or (t.max_seconds is not None and elapsed >= t.max_seconds)
            or (self.budget is not None and self.budget.done(self.step))
        )

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

    def _validate_or_stop(
        self, writer: RunWriter, progress: TrainingProgress, elapsed: float
    ) -> None:
        """Validate; a stop requested meanwhile ends it early and the run stops as between
        steps (validation never touches the training state, so last.pt is exact)."""
        try:
            self._validate(writer, progress, elapsed)
        except Interrupted:
            path = self.save(ckpt.LAST, elapsed)
            self.checkpoints.wait()
            raise interrupted(
                f"stopped during validation after step {self.step}, saved {path}; "
                f"resume with: charlstm train --resume {self.out_dir}"
            ) from None

    def _validate(self, writer: RunWriter, progress: TrainingProgress, elapsed: float) -> None:
        log = self.cfg.log
        with self.average.applied() if self.average is not None else nullcontext():
            result = evaluate_ids(self.model, self.val_ids, streams=self.cfg.train.eval_streams)
            if self.is_main:  # the one sample of the run's log
                settings = SampleSettings(
                    length=log.sample_length, temperature=log.sample_temperature, seed=self.step
                )
                text = generate(self.model, self.vocab, log.sample_prime, settings)[0]
        self.last_val_loss = result.loss
        improved = result.loss < self.best_val_loss
        if improved:  # saved outside the block: a checkpoint's `model` is the raw weights
            self.best_val_loss = result.loss
            self.save(ckpt.BEST, elapsed)
        if not self.is_main:
            return
        writer.validation(self.step, result.loss, text)
        progress.message(
            f"step {self.step}: val loss {result.loss:.4f} bpc {result.bpc:.4f} "
            f"on {result.chars:,} chars" + (" (best, saved best.pt)" if improved else "")
        )

    def _prepare_out_dir(self) -> None:
        try:
            if self.overwrite and self.step == 0:  # a fresh start: no stale curves or weights
                for old in [
                    *self.out_dir.glob("events.out.tfevents.*"),
                    *self.ckpt_dir.glob("*.pt"),
                ]:
                    old.unlink()
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            self.cfg.write_yaml(self.out_dir / "config.yaml")
        except OSError as err:
            raise CheckpointError(
                f"train.out_dir {self.out_dir} is not writable: {err.strerror or err}"
            ) from None


def _check_sample_prime(prime: str, vocab: Vocab) -> None:
    """The prime of the validation samples, checked before any training time is spent."""
    missing = sorted({ch for ch in prime if vocab.id_of(ch) is None})
    if missing:
        shown = ", ".join(repr(ch) for ch in missing[:10])
        raise ConfigError(
            f"config: log.sample_prime has {len(missing)} character(s) the corpus lacks "
            f"({shown}): change log.sample_prime"
        )
