"""`charlstm serve` put together: the engine (a task on the server's event loop), the web
app behind its access middleware, the --watch poller, and uvicorn; at the end one line
of counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import types

import torch
from rich.console import Console
from rich.text import Text

from charlstm.options import ServeSettings

# An idle keep-alive connection is closed after this long (uvicorn's own default).
KEEP_ALIVE_S = 5


def _uvicorn_server(config, on_exit):
    """uvicorn's server, but the first SIGTERM or Ctrl-C also calls `on_exit` (the engine
    starts draining), and the process then ends with status 0 (uvicorn would raise the
    signal again once it has stopped)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:
            on_exit()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            # kept after the server has stopped too: a second SIGTERM while the last
            # lines are written (a supervisor repeating itself) must not kill the process
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self.handle_exit)
            yield

    return Server(config)


def _timed_http(head_timeout: float):
    """uvicorn's HTTP/1.1 protocol, closing a connection that has not sent a whole request
    head within `head_timeout` seconds of connecting or of its last response: uvicorn
    itself times out only idle keep-alives, so 300 clients that send half a header and
    wait would each hold a connection for ever."""
    import h11
    from uvicorn.protocols.http import h11_impl
    from uvicorn.protocols.http.h11_impl import H11Protocol

    # past --max-connections uvicorn answers 503 itself: in the server's one error shape
    h11_impl.service_unavailable = _full

    class TimedH11(H11Protocol):
        head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self.arm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self.arm()

        def connection_lost(self, exc) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
            super().connection_lost(exc)

        def arm(self) -> None:
            if self.head_timer is not None:
                self.head_timer.cancel()
            self.head_timer = self.loop.call_later(head_timeout, self.late)

        def late(self) -> None:
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()  # no whole request head in time

    return TimedH11


async def _full(scope, receive, send) -> None:
    body = json.dumps({"error": {"message": "the server is at --max-connections: retry soon",
                                 "type": "server_busy"}}).encode()  # fmt: skip
    await send({"type": "http.response.start", "status": 503,
                "headers": [(b"content-type", b"application/json"), (b"retry-after", b"1"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _access_line(console: Console):
    styles = {2: "green", 3: "cyan", 4: "yellow", 5: "red"}

    def say(line: str, status: int) -> None:
        text = Text(time.strftime("%H:%M:%S "), style="dim")
        text.append(line, style=styles.get(status // 100, ""))
        console.print(text, soft_wrap=True, highlight=False)

    return say


def serve(model, settings: ServeSettings, console: Console) -> None:
    """Serve `model` until SIGTERM or Ctrl-C; --watch polls the file it came from."""
    import uvicorn

    from charlstm.serve.access import AccessMiddleware
    from charlstm.serve.app import create_app
    from charlstm.serve.engine import Engine

    def say(line: str) -> None:
        console.print(line, markup=False, highlight=False)

    torch.set_num_threads(settings.step_threads)
    engine = Engine(model.net, model.vocab, settings.max_streams, settings.interval_ms / 1000,
                    say=say)  # fmt: skip
    name = f"charlstm-{model.config.model.cell}"
    served = types.SimpleNamespace(model=model)
    web = create_app(served, engine, name, settings)
    access = AccessMiddleware(web, _access_line(console), settings.api_key,
                              hosts=settings.allowed_hosts, cors=settings.cors,
                              max_body=int(settings.max_body_mb * 1e6))  # fmt: skip
    watcher = None
    if settings.watch:
        from charlstm.serve.watch import Watcher

        watcher = Watcher(model.path, served, engine, say, model.device)
        watcher.start()
        say(f"watching {model.path}")
    root = f"http://{settings.host}:{settings.port}"
    say(f"serving {name} on {root}/v1, the playground at {root}/ (Ctrl-C or SIGTERM to stop)")
    try:
        config = uvicorn.Config(access, host=settings.host, port=settings.port,
                                log_level="warning", access_log=False,
                                timeout_graceful_shutdown=settings.drain_s + 5,
                                http=_timed_http(settings.read_timeout_s),
                                limit_concurrency=settings.max_connections,
                                timeout_keep_alive=KEEP_ALIVE_S)  # fmt: skip
        _uvicorn_server(config, lambda: engine.drain(settings.drain_s)).run()
    finally:
        if watcher is not None:
            watcher.stop()
        say(f"stopped: {engine.served:,} streams served, {engine.chars:,} characters, "
            f"{access.summary()}")  # fmt: skip
