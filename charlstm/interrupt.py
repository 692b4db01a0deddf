"""Ctrl-C and SIGTERM: every long operation stops promptly, between two units of work.

While a `StopRequests` block is active the handlers only remember the signal. Loops
that can run for long (encoding, validation, eval, inspect, sampling) call `check()`
between units of work (a chunk, a window, a character), which raises `Interrupted`;
the training loop instead polls `StopRequests.signum` between steps, so it can save
last.pt first. A signal therefore never lands inside an optimizer update or a
checkpoint write, and a command stops within one unit of work.

Blocks nest (the CLI opens one per command, the trainer one more): the handlers are
installed by the outermost and the remembered signal is shared, as signals are.

A server stops one request's work the same way: `cancelled_by(event)` makes `check()`
in this context (a worker thread started with asyncio.to_thread copies it) raise once
the event is set, when the client has gone.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from charlstm.errors import CharlstmError

# Exit codes of a run stopped by a signal, as shells report them (128 + signal number).
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

_received: int | None = None  # the signal remembered by the active blocks
_depth = 0  # how many StopRequests blocks are open
_cancel: ContextVar[threading.Event | None] = ContextVar("charlstm_cancel", default=None)


class Interrupted(CharlstmError):
    """Stopped by a signal (after saving what needed saving); carries the exit code."""

    prefix = ""  # not a mistake: the user asked for it

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def _remember(signum: int, _frame: Any) -> None:
    global _received
    _received = signum


def check(what: str = "work") -> None:
    """Raise Interrupted if a stop was requested; a no-op outside StopRequests blocks."""
    if _received is not None:
        raise interrupted(f"{what} stopped")
    cancel = _cancel.get()
    if cancel is not None and cancel.is_set():
        raise Interrupted(f"{what} stopped: nobody is waiting for it", 1)


@contextmanager
def cancelled_by(event: threading.Event) -> Iterator[None]:
    """Within this block (this context), `check()` raises once `event` is set."""
    token = _cancel.set(event)
    try:
        yield
    finally:
        _cancel.reset(token)


def interrupted(what_happened: str) -> Interrupted:
    signum = _received if _received is not None else signal.SIGINT
    name = signal.Signals(signum).name
    return Interrupted(f"{name}: {what_happened}", EXIT_CODES[signum])


class StopRequests:
    """Context manager: while inside, SIGINT and SIGTERM are remembered, not raised."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}

    @property
    def signum(self) -> int | None:
        return _received

    def __enter__(self) -> StopRequests:
        global _depth, _received
        if _depth == 0:
            _received = None
            try:
                for signum in EXIT_CODES:
                    self._previous[signum] = signal.signal(signum, _remember)
            except ValueError:  # not the main thread: leave signals alone
                pass
        _depth += 1
        return self

    def __exit__(self, *_exc: object) -> None:
        global _depth, _received
        _depth -= 1
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if _depth == 0:
            _received = None

    def interrupted(self, what_happened: str) -> Interrupted:
        return interrupted(what_happened)
