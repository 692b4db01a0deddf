"""`charlstm serve` under load, beside a naive server that answers one request at a time
with the same model, in the same run, on loopback.

    .venv/bin/python -m bench.serve --checkpoint runs/python-code [--clients 1,8,64,256]
                                    [--chars 300] [--seconds 8] [--soak SECONDS] [--no-naive]

For each count of concurrent clients, every client streams completions of `--chars`
characters one after another (server-sent events on a keep-alive connection, spoken
directly over asyncio streams) for `--seconds`, finishing the one it is in; reported:
aggregate characters per second, time to first character (p50, p99, over every
request), errors (a status other than 200, a broken stream, or a text that is not
`--chars` characters ending for its length), and the server's peak RSS. The naive
server is Model.stream behind a lock: what serving a model without batching gives.
The reference is the model's own step at as many rows as clients (no HTTP, the
server's thread count), the ceiling of what batching can give, measured just before
and after each row of the table (this shared machine drifts by tens of percent within
minutes); above the table, the same beside the server's engine alone (no HTTP).
`--soak S` then keeps 64 clients asking for S seconds and prints the server's RSS every
30 s (flat memory: no stream, queue or state left behind). `--hostile N` adds N hostile
clients to the soak, each going round: a malformed body, a body over the cap, half a
request left hanging (closed by the read timeout), a stream dropped after a few events,
an overflowing seed and a foreign Host; the normal clients must see no error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """VmHWM: the peak resident set; VmRSS: the current one."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(command: list[str], port: int, log=subprocess.DEVNULL) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"server did not start: {' '.join(command)}")


@dataclass
class Answer:
    chars: int = 0
    first: float | None = None  # seconds from writing the request to the first character
    error: str | None = None


class Connection:
    """One client's keep-alive HTTP/1.1 connection, spoken directly over asyncio streams:
    a load generator costs the shared cores little this way (httpx parsing every event
    of 64 streams took a core of its own and set the pace instead of the server)."""

    def __init__(self, url: str):
        self.host, port = url.removeprefix("http://").split(":")
        self.port = int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict) -> tuple[int, asyncio.StreamReader]:
        """Send the request; (status, reader at the start of the chunked body)."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                          f"application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                          + data)  # fmt: skip
        line = await self.reader.readline()
        status = int(line.split(b" ")[1]) if line.count(b" ") >= 2 else 0
        while (await self.reader.readline()).strip():  # the headers
            pass
        return status, self.reader

    async def chunks(self):
        """The chunked body's pieces, then the connection is ready for the next request."""
        while True:
            size = int((await self.reader.readline()).split(b";")[0], 16)
            data = await self.reader.readexactly(size + 2)
            if size == 0:
                return
            yield data[:-2]

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def one_request(conn: Connection, chars: int, seed: int) -> Answer:
    body = {"prompt": "def ", "max_tokens": chars, "stream": True, "seed": seed}
    written = time.perf_counter()
    answer, finish, pending = Answer(), None, b""
    try:
        status, _ = await conn.post("/v1/completions", body)
        if status != 200:
            conn.close()
            answer.error = f"HTTP {status}"
            return answer
        async for chunk in conn.chunks():
            pending += chunk
            *events, pending = pending.split(b"\n\n")
            for event in events:
                if not event.startswith(b"data: ") or event == b"data: [DONE]":
                    continue
                choice = json.loads(event[6:])["choices"][0]
                if choice["text"] and answer.first is None:
                    answer.first = time.perf_counter() - written
                answer.chars += len(choice["text"])
                finish = choice.get("finish_reason") or finish
    except (OSError, ValueError, asyncio.IncompleteReadError) as err:
        conn.close()
        answer.error = type(err).__name__
        return answer
    if answer.chars != chars or finish not in (None, "length"):
        answer.error = f"{answer.chars} of {chars} characters, finish {finish}"
    return answer


def percentiles(values: list[float]) -> tuple[float, float]:
    """(p50, p99) of the values, in milliseconds."""
    if not values:
        return float("nan"), float("nan")
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return statistics.median(ordered) * 1000, p99 * 1000


@dataclass
class Load:
    rate: float  # characters per second, all clients together
    first: tuple[float, float]  # p50, p99 ms from writing the request
    errors: list[str]
    requests: int


async def load(url: str, clients: int, chars: int, seconds: float, seed0: int = 0) -> Load:
    """Every client asks again as soon as it is answered until `seconds` have passed."""
    answers: list[Answer] = []
    started = time.perf_counter()

    async def keep_asking(i: int) -> None:
        conn, n = Connection(url), 0
        try:
            while n == 0 or time.perf_counter() - started < seconds:
                answers.append(await one_request(conn, chars, seed0 + i + n * clients))
                n += 1
        finally:
            conn.close()

    await asyncio.gather(*(keep_asking(i) for i in range(clients)))
    wall = time.perf_counter() - started
    return Load(
        rate=sum(a.chars for a in answers) / wall,
        first=percentiles([a.first for a in answers if a.first is not None]),
        errors=[a.error for a in answers if a.error],
        requests=len(answers),
    )


def server_firsts(log: Path, since: int) -> str:
    """p50 / p99 of the server's own time to first character (its access lines say
    when each completion's first text went out) over the log written after `since`."""
    lines = log.read_bytes()[since:].decode("utf-8", "replace")
    firsts = [int(ms) / 1000 for ms in re.findall(r"first after (\d+) ms", lines)]
    if not firsts:
        return "-"
    p50, p99 = percentiles(firsts)
    return f"{p50:.0f} / {p99:.0f} ms"


class Reference:
    """What the server is held to, in this process, with the server's thread count: the
    model's own step (no HTTP, no sampling, nothing but the forward pass) and the
    server's engine alone (the step, drawing, decoding, hand-over; no HTTP)."""

    def __init__(self, checkpoint: str, threads: int):
        import torch

        from charlstm.api import load as load_model

        torch.set_num_threads(threads)
        self.model = load_model(checkpoint, "cpu")

    def bare(self, rows: int, seconds: float = 1.0) -> float:
        """Characters per second of the bare step at `rows` rows."""
        import torch

        from charlstm.generate.sample import one_char_steps

        net = self.model.net.eval()
        with torch.no_grad(), one_char_steps(torch.device("cpu")):
            last, state = torch.zeros((rows, 1), dtype=torch.long), None
            for _ in range(20):
                _, state = net(last, state)
            steps, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                _, state = net(last, state)
                steps += 1
            return rows * steps / (time.perf_counter() - started)

    def both(self, rows: int) -> tuple[float, float]:
        """(bare, engine alone), the medians of three turns of each: this shared machine
        drifts by tens of percent within minutes, and turns touch both alike."""
        turns = [(self.bare(rows), asyncio.run(engine_alone(self.model, rows, 1.0)))
                 for _ in range(3)]  # fmt: skip
        return statistics.median(t[0] for t in turns), statistics.median(t[1] for t in turns)


async def engine_alone(model, rows: int, seconds: float) -> float:
    """Characters per second of `rows` endless seeded streams in the server's engine."""
    from charlstm.options import MAX_LENGTH, SampleSettings
    from charlstm.serve.engine import Engine, Stream

    engine = Engine(model.net, model.vocab, rows)
    await engine.start()
    context = model.vocab.encode("def ").tolist()
    streams = [Stream(context, SampleSettings(length=MAX_LENGTH, seed=i), ()) for i in range(rows)]

    async def read(stream: Stream) -> None:
        while True:
            await stream.events.get()

    readers = [asyncio.create_task(read(s)) for s in streams]
    for stream in streams:
        engine.submit(stream)
    await asyncio.sleep(0.3)  # primes read, every row in the batch
    chars, started = engine.chars, time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (engine.chars - chars) / (time.perf_counter() - started)
    for reader in readers:
        reader.cancel()
    await engine.close()
    return rate


def naive_server(checkpoint: str, port: int) -> None:
    """One request at a time: Model.stream behind a lock."""
    import torch
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    from charlstm.api import load as load_model
    from charlstm.options import ServeSettings

    torch.set_num_threads(ServeSettings().step_threads)  # as charlstm serve runs its steps
    model = load_model(checkpoint, "cpu")
    app = FastAPI()
    lock = asyncio.Lock()

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.post("/v1/completions")
    async def completions(body: dict):

        async def events():
            async with lock:
                pieces = model.stream(prime=body["prompt"], length=body["max_tokens"],
                                      seed=body.get("seed"), temperature=1.0)  # fmt: skip
                next(pieces)  # the prime
                for piece in pieces:
                    choice = {"text": piece, "index": 0}
                    yield f"data: {json.dumps({'choices': [choice]})}\n\n"
                    await asyncio.sleep(0)
                yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="runs/python-code")
    parser.add_argument("--clients", default="1,8,64,256")
    parser.add_argument("--chars", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--soak", type=float, default=0.0)
    parser.add_argument("--hostile", type=int, default=0)
    parser.add_argument("--no-naive", action="store_true", help="leave the naive server out")
    parser.add_argument("--naive-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_server:
        naive_server(args.checkpoint, args.naive_server)
        return
    from charlstm.options import ServeSettings

    counts = [int(c) for c in args.clients.split(",")]
    threads = ServeSettings().step_threads
    print(f"machine: {machine()}; {args.chars} characters per request, {args.seconds:g} s "
          f"per row; {args.checkpoint}\n")  # fmt: skip
    reference = Reference(args.checkpoint, threads)
    print(f"| {threads} step thread(s), no HTTP | rows | bare step chars/s | engine alone | "
          "engine / bare |")  # fmt: skip
    print("|---|---:|---:|---:|---:|")
    for rows in counts:
        rate, engine = reference.both(rows)
        print(f"| | {rows} | {rate:,.0f} | {engine:,.0f} | {engine / rate:.2f} |", flush=True)
    print("\n| server | clients | requests | chars/s | bare step then | of it | vs 1 client | "
          "first char p50 | p99 | in the server p50 / p99 | errors | peak RSS |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("charlstm serve", "naive (one at a time)")[: 1 if args.no_naive else 2]:
        port = free_port()
        if name == "charlstm serve":
            command = [sys.executable, "-m", "charlstm", "serve", "-c", args.checkpoint,
                       "--port", str(port), "--max-streams", str(max(counts) + 8)]  # fmt: skip
        else:
            command = [sys.executable, "-m", "bench.serve", "--checkpoint", args.checkpoint,
                       "--naive-server", str(port)]  # fmt: skip
        log_path = Path(tempfile.mkdtemp()) / "server.log"
        log = log_path.open("wb")
        proc = start(command, port, log)
        url = f"http://127.0.0.1:{port}"
        try:
            asyncio.run(load(url, 2, 50, 0))  # warm: the first request pays for set-up
            single = None
            for clients in counts:
                since = log_path.stat().st_size
                before = reference.bare(clients)  # the bare step just before and after
                got = asyncio.run(load(url, clients, args.chars, args.seconds))
                bare = (before + reference.bare(clients)) / 2
                single = single or got.rate or float("nan")
                print(f"| {name} | {clients} | {got.requests:,} | {got.rate:,.0f} | {bare:,.0f} | "
                      f"{got.rate / bare:.2f} | "
                      f"{got.rate / single:.1f}x | {got.first[0]:.0f} ms | {got.first[1]:.0f} ms | "
                      f"{server_firsts(log_path, since)} | {len(got.errors)} | "
                      f"{rss_mb(proc.pid):.0f} MB |", flush=True)  # fmt: skip
            if args.soak and name == "charlstm serve":
                soak(url, proc, args)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def soak(url: str, proc: subprocess.Popen, args) -> None:
    print(f"\nsoak: 64 clients and {args.hostile} hostile ones for {args.soak:.0f} s; the "
          "server's RSS every 30 s")  # fmt: skip
    started = time.monotonic()
    errors, asked, hostile = 0, 0, Hostile()
    while time.monotonic() - started < args.soak:
        got = asyncio.run(soak_round(url, args.chars, asked, args.hostile, hostile))
        errors, asked = errors + len(got.errors), asked + got.requests
        print(f"  {time.monotonic() - started:5.0f} s: RSS {rss_mb(proc.pid, 'VmRSS'):.0f} MB, "
              f"{asked:,} requests, {errors} errors, {got.rate:,.0f} chars/s; hostile: "
              f"{hostile.summary()}", flush=True)  # fmt: skip
        if got.errors:
            print(f"    errors: {sorted(set(got.errors))[:5]}")


async def soak_round(url: str, chars: int, seed0: int, hostiles: int, hostile) -> Load:
    """30 s of the normal load with `hostiles` hostile clients beside it."""
    stop_at = time.monotonic() + 30
    attackers = [asyncio.create_task(hostile.attack(url, i, stop_at)) for i in range(hostiles)]
    got = await load(url, 64, chars, 30, seed0=seed0)
    await asyncio.gather(*attackers)
    return got


class Hostile:
    """What the hostile clients did, and what the server answered (status or close)."""

    KINDS = ("malformed", "oversized", "half-sent", "dropped", "seed", "foreign host",
             "automaton", "contains", "long regex", "ids")  # fmt: skip
    # Patterns whose automata blow up (2**14 states; a product of millions), a 20 KB
    # pattern, and a length no one can be given: each a 400 in seconds at most.
    BODIES = {
        "automaton": {"prompt": "def ", "max_tokens": 5, "regex": "(a|b)*a(a|b){13}"},
        "contains": {"prompt": "def ", "max_tokens": 5,
                     "contains": ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta",
                                  "theta", "iota", "kappa", "lambda", "mu"]},
        "long regex": {"prompt": "def ", "max_tokens": 5,
                       "regex": "(" + "|".join(f"w{i}" for i in range(3000)) + ")"},
        "ids": {"prompt": "def ", "max_tokens": 10**12},
    }  # fmt: skip

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, int]] = {k: {} for k in self.KINDS}

    def summary(self) -> str:
        return "; ".join(
            f"{kind} " + ",".join(f"{answer} x{n}" for answer, n in sorted(got.items()))
            for kind, got in self.seen.items() if got
        )  # fmt: skip

    async def attack(self, url: str, index: int, stop_at: float) -> None:
        host, port = url.removeprefix("http://").split(":")
        turn = index
        while time.monotonic() < stop_at:
            kind = self.KINDS[turn % len(self.KINDS)]
            turn += 1
            try:
                answer = await asyncio.wait_for(self._one(kind, host, int(port)), 60)
            except (OSError, asyncio.TimeoutError) as err:
                answer = type(err).__name__
            self.seen[kind][answer] = self.seen[kind].get(answer, 0) + 1

    async def _one(self, kind: str, host: str, port: int) -> str:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            head = "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            body = b""
            if kind == "malformed":
                body = b'{"prompt": "def ", "max_tokens": '
            elif kind == "seed":
                body = json.dumps({"prompt": "def ", "max_tokens": 5, "seed": 2**70}).encode()
            elif kind == "foreign host":
                head = "POST /v1/completions HTTP/1.1\r\nHost: evil.example\r\n"
                body = json.dumps({"prompt": "def ", "max_tokens": 5}).encode()
            elif kind in self.BODIES:
                body = json.dumps(self.BODIES[kind]).encode()
            elif kind == "dropped":
                body = json.dumps({"prompt": "def ", "max_tokens": 2000, "stream": True}).encode()
            if kind == "half-sent":  # the request line and half a header, then nothing
                writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
                await writer.drain()
                return "closed" if await reader.read(65536) == b"" else "answered"
            if kind == "oversized":  # declared and sent past the cap, a piece at a time
                size = 64 << 20
                writer.write(f"{head}Content-Type: application/json\r\nContent-Length: {size}"
                             "\r\n\r\n".encode())  # fmt: skip
                piece = b" " * (1 << 20)
                try:
                    for _ in range(64):
                        writer.write(piece)
                        await writer.drain()
                except OSError:
                    pass
                return await _status(reader)
            writer.write(f"{head}Content-Type: application/json\r\nContent-Length: {len(body)}"
                         "\r\nConnection: close\r\n\r\n".encode() + body)  # fmt: skip
            await writer.drain()
            status = await _status(reader)
            if kind == "dropped":
                await reader.read(2048)  # a few events, then gone
            return status
        finally:
            writer.close()


async def _status(reader: asyncio.StreamReader) -> str:
    line = await reader.readline()
    return line.split(b" ")[1].decode() if line.count(b" ") >= 2 else "closed"


if __name__ == "__main__":
    main()
