"""The training loop's progress: a rich bar (step, %, loss, bpc, chars/s, elapsed, time
left by whichever limit is closer) on a terminal, plain lines at most every
PLAIN_INTERVAL_S elsewhere or with --quiet."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import TextColumn

from charlstm.progress import PLAIN_INTERVAL_S, bar, format_duration


class TrainingProgress:
    def __init__(self, console: Console, quiet: bool = False):
        self.console = console
        self.fancy = console.is_terminal and not quiet
        self._last_plain = 0.0
        self._bar = None
        if self.fancy:
            step = TextColumn("[bold]step {task.fields[step]}")
            self._bar = bar(console, step, transient=False)
            self._task = self._bar.add_task("train", total=1.0, step=0, stats="", left="?")
            self._bar.start()

    def update(self, step: int, fraction: float, left_s: float | None, stats: str) -> None:
        left = format_duration(left_s) if left_s is not None else "?"
        if self._bar is not None:
            self._bar.update(self._task, completed=fraction, step=step, stats=stats, left=left)
        elif time.monotonic() - self._last_plain >= PLAIN_INTERVAL_S or fraction >= 1.0:
            self._last_plain = time.monotonic()
            self.console.print(
                f"step {step} ({fraction:4.0%}) {stats} left {left}", highlight=False
            )

    def message(self, text: str) -> None:
        """A line that stays (validation results, checkpoints), printed above the bar."""
        self.console.print(text, highlight=False)

    def close(self, finished_at: int | None = None) -> None:
        """Stop the bar; a run that reached its end (`finished_at`, its last step) leaves
        it at 100%, not at the last log line's few percent short with time "left"."""
        if self._bar is not None:
            if finished_at is not None:
                self._bar.update(self._task, completed=1.0, step=finished_at, left="0:00")
            self._bar.stop()
            self._bar = None
