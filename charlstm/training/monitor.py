"""TensorBoard output of a run: scalars, text samples and the hyperparameters.

All events go to one folder (the run's out_dir), so `tensorboard --logdir runs/` shows
one run per training. A resumed run purges events past its resume step, so curves
continue without overlapping points.
"""

from __future__ import annotations

import math
import threading
import time
import traceback
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from charlstm.config import Config
from charlstm.data.vocab import Vocab
from charlstm.errors import ConfigError
from charlstm.model import bits_per_char


def _quiet_event_writer_failures() -> None:
    """TensorBoard writes its event files from a thread of its own: on a full disk that
    thread dies with a traceback on stderr. The run itself says what happened in one
    line (its next checkpoint cannot be written either), so an OSError in that thread
    is let go quietly; any other exception in any thread is shown as before."""
    previous = threading.excepthook
    if getattr(previous, "charlstm_quiet", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        frames = traceback.extract_tb(args.exc_traceback)
        in_tensorboard = any("tensorboard" in frame.filename for frame in frames)
        if not (issubclass(args.exc_type, OSError) and in_tensorboard):
            previous(args)

    hook.charlstm_quiet = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class RunWriter:
    def __init__(
        self, out_dir: Path, cfg: Config, purge_step: int | None = None, enabled: bool = True
    ):
        """`enabled=False` (ranks other than the main one) writes nothing at all."""
        self.enabled = enabled
        if not enabled:
            return
        _quiet_event_writer_failures()
        self.writer = SummaryWriter(log_dir=str(out_dir), purge_step=purge_step)
        if purge_step is None:
            self._write_hparams(cfg)

    def _write_hparams(self, cfg: Config) -> None:
        # TensorBoard's HParams tab pairs these with the val/* scalars of the same run.
        flat = {
            f"{section}.{key}": value if isinstance(value, (int, float, str, bool)) else str(value)
            for section, values in cfg.to_dict().items()
            for key, value in values.items()
        }
        for summary in hparams(flat, {"val/loss": math.nan, "val/bpc": math.nan}):
            self.writer.file_writer.add_summary(summary)

    def train_scalars(
        self,
        step: int,
        loss: float,
        grad_norm: float,
        lr: float,
        chars_per_sec: float,
        skipped_updates: int,
        rollbacks: int,
    ) -> None:
        if not self.enabled:
            return
        scalars = {"train/loss": loss, "train/bpc": bits_per_char(loss),
                   "train/grad_norm": grad_norm, "train/lr": lr,
                   "train/chars_per_sec": chars_per_sec,
                   "train/skipped_updates": skipped_updates,
                   "train/rollbacks": rollbacks}  # fmt: skip
        self._writing(lambda w: [w.add_scalar(k, v, step) for k, v in scalars.items()])

    def _writing(self, write) -> None:
        """Hand `write` the SummaryWriter. TensorBoard writes from a thread of its own and
        raises that thread's OSError (a full disk) at the next call: the events stop
        there, and training goes on, its next checkpoint saying in one line whether the
        disk can take it (the events are the run's least part)."""
        if not self.enabled:
            return
        try:
            write(self.writer)
        except OSError:
            self.enabled = False
            self.close_quietly()

    def validation(self, step: int, loss: float, sample: str) -> None:
        # TensorBoard renders text as Markdown: indent to keep it verbatim.
        shown = "\n".join("    " + line for line in sample.split("\n"))

        def write(w: SummaryWriter) -> None:
            w.add_scalar("val/loss", loss, step)
            w.add_scalar("val/bpc", bits_per_char(loss), step)
            w.add_text("samples", shown, step)
            w.flush()

        self._writing(write)

    def text(self, tag: str, text: str, step: int) -> None:
        """A note on TensorBoard's text tab (the end-of-run diagnosis)."""
        self._writing(lambda w: w.add_text(tag, text, step))

    def close(self) -> None:
        if self.enabled:
            self.close_quietly()

    def close_quietly(self) -> None:
        try:
            self.writer.close()
        except OSError:  # a full disk: the run says so in its own line
            pass


class TrainMeter:
    """Sums losses on the device between log points (one host sync per log line, not
    per step) and times training alone, without validation or checkpoint saves. Skipped
    updates count towards time, not towards the means."""

    def __init__(self, device: torch.device, step: int):
        self.sums = torch.zeros(3, device=device)  # loss, grad norm, applied updates
        self.restart(step)

    def restart(self, step: int) -> None:
        self.since, self.since_step = time.perf_counter(), step
        self.sums.zero_()

    def add(self, loss: torch.Tensor, grad_norm: torch.Tensor, skipped: torch.Tensor) -> None:
        applied = 1.0 - skipped
        # zeroed first: a skipped step's loss may be NaN, and NaN * 0 is NaN
        values = torch.stack([loss.float(), grad_norm.float()]).nan_to_num(0.0, 0.0, 0.0)
        self.sums += torch.cat([values * applied, applied.reshape(1)])

    def read(
        self, step: int, chars_per_step: int, reduce=lambda t: t
    ) -> tuple[float, float, float] | None:
        """(mean loss, mean grad norm, chars/s) since the last read, then restart; None
        when no update was applied since. `reduce` averages over data-parallel ranks."""
        seconds = max(time.perf_counter() - self.since, 1e-9)
        chars_per_sec = (step - self.since_step) * chars_per_step / seconds
        applied = self.sums[2].item()  # equal on every rank: they skip together
        means = self.sums[:2] / max(applied, 1.0)
        self.restart(step)
        if applied == 0:
            return None
        loss, norm = reduce(means).tolist()
        return loss, norm, chars_per_sec


def sample_prime(prime: str | None, vocab: Vocab, train_ids) -> str:
    """The prime of the validation samples, checked before any training time is spent:
    the one given, which must be text the corpus has; by default a newline, or, in a
    corpus without one, the corpus's first character (a default never fails)."""
    if prime is None:
        newline = vocab.id_of("\n")
        return "\n" if newline is not None else vocab.decode([int(train_ids[0])])
    missing = sorted({ch for ch in prime if vocab.id_of(ch) is None})
    if missing:
        shown = ", ".join(repr(ch) for ch in missing[:10])
        raise ConfigError(
            f"config: log.sample_prime has {len(missing)} character(s) the corpus lacks "
            f"({shown}): change log.sample_prime"
        )
    return prime
