"""What every endpoint of `charlstm serve` shares: the refusal of a busy server, and the
Service (the model served, the engine, the limits, the jobs)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator

from fastapi import Request

from charlstm import interrupt
from charlstm.options import ServeSettings
from charlstm.serve.engine import Engine
from charlstm.serve.protocol import TEXT_PER_MAX_CHARS

RETRY_AFTER_S = 1
DISCONNECT_POLL_S = 0.25  # how often a /sample or /score job looks for its client


class Busy(Exception):
    """No room for this request now: 503 with Retry-After, never a growing backlog."""


class Service:
    """What every endpoint shares: the model being served (`served.model`; --watch
    replaces it), the engine, the limits, and the /sample and /score jobs running."""

    def __init__(self, served, engine: Engine, name: str, settings: ServeSettings):
        self.served, self.engine, self.name, self.settings = served, engine, name, settings
        # what a request's `model` may say: the name, and any --model-name
        self.names = (name, *settings.model_name)
        self.started = int(time.time())
        self.max_chars = settings.max_chars
        self.max_text = settings.max_chars * TEXT_PER_MAX_CHARS
        self.jobs = 0

    async def in_worker(self, request: Request, work, *args, **kwargs):
        """Run a whole /sample or /score request on a worker thread, at most max_jobs
        at once: each holds a core for as long as it takes, or until its client goes
        away (then it stops at its next character or window)."""
        self.take_job()
        gone = threading.Event()

        def job():
            with interrupt.cancelled_by(gone):
                return work(*args, **kwargs)

        running = asyncio.ensure_future(asyncio.to_thread(job))
        try:
            while not (await asyncio.wait({running}, timeout=DISCONNECT_POLL_S))[0]:
                if await request.is_disconnected():
                    gone.set()
            return running.result()
        finally:
            running.add_done_callback(lambda _: self._release_job())

    def take_job(self) -> None:
        """Count one more /sample or /score job, or refuse it (503) when max_jobs run."""
        if self.jobs >= self.settings.max_jobs:
            raise Busy(f"the server is busy ({self.settings.max_jobs} /sample or /score requests)")
        self.jobs += 1

    async def streamed(self, pieces: Iterator[str]) -> AsyncIterator[str]:
        """A streamed /sample job (counted already by take_job): each piece drawn on a
        worker thread. A client that goes away stops it before its next piece."""
        try:
            while (piece := await asyncio.to_thread(next, pieces, None)) is not None:
                yield piece
        finally:
            self._release_job()

    def _release_job(self) -> None:
        self.jobs -= 1


def service_of(request: Request) -> Service:
    return request.app.state.service
