"""One training process per run folder.

Two processes training into one out_dir would interleave their checkpoints and event
files, and an `--overwrite` would delete a live run's checkpoints under it. The trainer
holds an exclusive flock on `out_dir/.lock` (holding its pid) for as long as it lives;
the kernel releases it when the process ends, however it ends (kill -9 included), so a
lock is never left stale.
"""

from __future__ import annotations

import fcntl
import os
import weakref
from pathlib import Path

from charlstm.errors import CheckpointError

LOCK_NAME = ".lock"


class RunLock:
    def __init__(self, out_dir: Path):
        path = out_dir / LOCK_NAME
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CheckpointError(
                f"train.out_dir {out_dir} is not writable: {err.strerror or err}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise CheckpointError(
                f"{out_dir} is in use by another charlstm train (pid {holder}): wait for it "
                "to end or stop it, or pick another train.out_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        # Released by release(), or when this object is collected.
        self._close = weakref.finalize(self, os.close, fd)

    def release(self) -> None:
        self._close()
