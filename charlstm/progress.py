"""What long work shows while it runs: a rich progress bar on a terminal, plain lines
elsewhere (CI logs, pipes, --quiet), so logs stay readable. `Work` is every long
operation's (encoding, validation, eval, inspect); the training loop's own bar is
charlstm.training.progress, built on the same two modes."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from charlstm import interrupt

# Plain mode prints at most one progress line per this many seconds.
PLAIN_INTERVAL_S = 10.0


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# A long operation shows nothing for its first second: most finish sooner.
SHOW_AFTER_S = 1.0


def bar(console: Console, first: TextColumn, transient: bool) -> Progress:
    """The one bar of every long operation and of training: a leading label, the bar,
    percent done, a `stats` field, time elapsed and a `left` field."""
    return Progress(
        first,
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("left {task.fields[left]}"),
        console=console,
        transient=transient,
    )


def _amount(value: float, unit: str) -> str:
    if unit == "bytes":
        return f"{value / 1e6:,.1f} MB"
    return f"{value:,.0f} {unit}"


class Work:
    """Progress of one long operation (encoding, evaluation, inspection): nothing during
    its first second, then a bar on a terminal or a plain line every PLAIN_INTERVAL_S
    elsewhere, with rate and time left. `advance` is also where the operation honours a
    stop request (see interrupt.py), so every loop that reports progress can be stopped.

        with Work("encoding", total_bytes, "bytes") as work:
            for chunk in chunks:
                ...
                work.advance(len(chunk), files=1)
    """

    def __init__(
        self,
        what: str,
        total: int,
        unit: str = "chars",
        console: Console | None = None,
        quiet: bool = False,
        visible: bool = True,
    ):
        self.what, self.total, self.unit = what, max(1, total), unit
        self.console = console or Console(stderr=True, highlight=False)
        self.visible = visible
        self.fancy = visible and self.console.is_terminal and not quiet
        self.done = 0
        self.files = 0
        self.started = time.monotonic()
        self._last_plain = self.started
        self._bar: Progress | None = None

    def __enter__(self) -> Work:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def advance(self, amount: int, files: int = 0) -> None:
        interrupt.check(self.what)
        self.done += amount
        self.files += files
        now = time.monotonic()
        if not self.visible or now - self.started < SHOW_AFTER_S:
            return
        rate = self.done / max(now - self.started, 1e-9)
        # nothing measured yet (or more than the estimate): no guess rather than a wild one
        unknown = self.done <= 0 or self.done > self.total
        left = "?" if unknown else format_duration((self.total - self.done) / rate)
        stats = f"{_amount(rate, self.unit)}/s"
        if self.files:
            stats = f"{self.files:,} files, {stats}"
        if self.fancy:
            if self._bar is None:
                self._start_bar()
            self._bar.update(self._task, completed=self.done, stats=stats, left=left)
        elif now - self._last_plain >= PLAIN_INTERVAL_S:
            self._last_plain = now
            self.console.print(
                f"{self.what}: {_amount(self.done, self.unit)} of "
                f"{_amount(self.total, self.unit)} ({self.done / self.total:.0%}), "
                f"{stats}, left {left}",
                highlight=False,
            )

    def _start_bar(self) -> None:
        # transient: the command's own result line replaces it
        self._bar = bar(self.console, TextColumn(f"[bold]{self.what}"), transient=True)
        self._task = self._bar.add_task(self.what, total=self.total, stats="", left="?")
        self._bar.start()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class Tally:
    """Progress of work whose size is not known ahead (the files of a folder, found as
    it is walked): nothing for its first second, then a line at most every
    PLAIN_INTERVAL_S with the count so far. `add` honours a stop request, as
    Work.advance does."""

    def __init__(self, what: str, unit: str, console: Console | None = None):
        self.what, self.unit = what, unit
        self.console = console or Console(stderr=True, highlight=False)
        self.count = 0
        self.started = self._last = time.monotonic()

    def add(self, n: int) -> None:
        interrupt.check(self.what)
        self.count += n
        now = time.monotonic()
        if now - self.started >= SHOW_AFTER_S and now - self._last >= PLAIN_INTERVAL_S:
            self._last = now
            self.console.print(
                f"{self.what}: {self.count:,} {self.unit} so far, "
                f"{format_duration(now - self.started)}",
                highlight=False,
            )
