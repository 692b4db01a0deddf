"""`charlstm serve --watch`: serve a model while it trains. The checkpoint file is polled;
when it changes (the trainer renames a finished file into place, so a new file is whole)
the new weights are read and handed to the engine, which takes them between two steps:
streams in flight carry on with the new weights, none is dropped. A file that cannot be
read, or a model of another shape or vocabulary, keeps the old one serving, with one
line saying why."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from charlstm.errors import CharlstmError

POLL_S = 1.0


class Watcher(threading.Thread):
    def __init__(self, path: Path, served, engine, say: Callable[[str], None], device):
        super().__init__(name="charlstm-watch", daemon=True)
        self.path, self.served, self.engine, self.say = path, served, engine, say
        self.device = device
        self.seen = self._signature()
        self.stopping = threading.Event()

    def _signature(self):
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def run(self) -> None:
        while not self.stopping.wait(POLL_S):
            now = self._signature()
            if now is None or now == self.seen:
                continue
            self.seen = now
            self._reload()

    def _reload(self) -> None:
        from charlstm.api import load

        current = self.served.model
        try:
            fresh = load(self.path, self.device)
        except CharlstmError as err:
            self.say(f"--watch: kept step {current.step} serving: {err}")
            return
        if fresh.vocab != current.vocab or fresh.config.model != current.config.model:
            self.say(
                f"--watch: kept step {current.step} serving: {self.path} holds a model of "
                "another shape or vocabulary (restart the server to serve it)"
            )
            return
        self.engine.swap(fresh.net)
        self.served.model = fresh
        self.say(f"--watch: now serving step {fresh.step} from {self.path}")

    def stop(self) -> None:
        self.stopping.set()
