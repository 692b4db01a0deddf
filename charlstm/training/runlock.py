"""One training process per run folder.

Two processes training into one out_dir would interleave their checkpoints and event
files, and an `--overwrite` would delete a live run's checkpoints under it. The trainer
holds an exclusive lock on the run's lock file for as long as it lives, through the
`filelock` package: an OS lock (flock on Unix, LockFileEx on Windows) that the kernel
releases when the process ends, however it ends (kill -9 included), so a lock is never
left stale. Beside it, the holder writes its pid, so a refusal can name the process.
"""

from __future__ import annotations

import os

import filelock

from charlstm.errors import CheckpointError
from charlstm.rundir import RunDir


class RunLock:
    def __init__(self, run: RunDir):
        self._run = run
        self._lock = filelock.FileLock(run.lock_file, blocking=False)
        try:
            run.root.mkdir(parents=True, exist_ok=True)
            self._lock.acquire()
        except filelock.Timeout:
            raise CheckpointError(
                f"{run} is in use by another charlstm train (pid {self._holder(run)}): "
                "wait for it to end or stop it, or pick another train.out_dir"
            ) from None
        except OSError as err:
            raise CheckpointError(
                f"train.out_dir {run} is not writable: {err.strerror or err}"
            ) from None
        try:
            run.lock_owner_file.write_text(f"{os.getpid()}\n")
        except OSError:
            pass  # the lock holds without it; a refusal then says "unknown"

    @staticmethod
    def _holder(run: RunDir) -> str:
        try:
            return run.lock_owner_file.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def release(self, abandoned: bool = False) -> None:
        """Let the folder go; `abandoned` (the run failed before it wrote anything):
        also take away the lock files and the folder, if nothing else is in it."""
        self._lock.release()
        if abandoned:
            root = self._run.root
            if {p.name for p in root.iterdir()} <= {self._run.lock_file.name,
                                                    self._run.lock_owner_file.name}:  # fmt: skip
                self._run.lock_owner_file.unlink(missing_ok=True)
                self._run.lock_file.unlink(missing_ok=True)
                root.rmdir()
