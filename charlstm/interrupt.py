"""Ctrl-C and SIGTERM during training: finish the step, save, then stop with 130 / 143.

The handlers only remember the signal; the training loop checks it between steps, so a
signal never lands in the middle of an optimizer update or a checkpoint write.
"""

from __future__ import annotations

import signal
from typing import Any

from charlstm.errors import CharlstmError

# Exit codes of a run stopped by a signal, as shells report them (128 + signal number).
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(CharlstmError):
    """Training stopped by a signal after saving last.pt; carries the exit code."""

    prefix = ""  # not a mistake: the user asked for it

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class StopRequests:
    """Context manager: while inside, SIGINT and SIGTERM are remembered, not raised."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequests:
        try:
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._remember)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    def _remember(self, signum: int, _frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def interrupted(self, what_happened: str) -> Interrupted:
        name = signal.Signals(self.signum).name
        return Interrupted(f"{name}: {what_happened}", EXIT_CODES[self.signum])
