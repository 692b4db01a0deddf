"""The HTTP side of `charlstm serve`: FastAPI (Typer's sibling: typed request models,
so a bad field is a 422 naming it) on uvicorn.

Endpoints: POST /v1/completions in OpenAI's shape (max_tokens counts characters;
`logprobs` gives each character's log-probability), GET /v1/models, and charlstm's own
GET /health, GET /info and POST /score. Requests never name files on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from charlstm import interrupt
from charlstm.errors import CharlstmError
from charlstm.options import SampleSettings, ServeSettings
from charlstm.generate.search import start_context
from charlstm.serve.access import note_chars, note_first_text, request_id
from charlstm.serve.engine import Done, Engine, Full, Piece, Stream

RETRY_AFTER_S = 1
DISCONNECT_POLL_S = 0.25  # how often a /sample or /score job looks for its client


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    prompt: str | list[str] = ""
    max_tokens: int = Field(16, ge=0)
    temperature: float = Field(1.0, gt=0.0, le=100.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1, le=64)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    user: str | None = None


class SampleRequest(BaseModel):
    """Every option of `charlstm sample` (the defaults are the same)."""

    model_config = ConfigDict(extra="forbid")

    prime: str = ""
    length: int = Field(500, ge=0)
    temperature: float = Field(0.8, gt=0.0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    greedy: bool = False
    seed: int | None = None
    num_samples: int = Field(1, ge=1, le=64)
    stop: str | None = None
    unknown: Literal["error", "skip"] = "error"
    beam: int | None = Field(None, ge=1, le=64)
    best_of: int | None = Field(None, ge=1, le=256)
    documents: int | None = Field(None, ge=1, le=10000)
    unique: bool = False
    novel: bool = False
    label: str | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[str] | None = None
    text: str | None = None
    label: str | None = None


def error(status: int, message: str, kind: str = "invalid_request_error", **headers):
    body = {"error": {"message": message, "type": kind}}
    return JSONResponse(body, status_code=status, headers=headers or None)


class Busy(Exception):
    """No room for this request now: 503 with Retry-After, never a growing backlog."""


def create_app(served, engine: Engine, name: str, settings: ServeSettings) -> FastAPI:
    """`served.model` is the Model being served (--watch replaces it). The API key and
    the access log are the middleware's (serve/access.py), around this app."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # the engine steps on this loop; it stops after the last response has drained
        await engine.start()
        yield
        await engine.close()

    app = FastAPI(title="charlstm", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)  # fmt: skip
    started = int(time.time())
    vocab = served.model.vocab  # the same for every model --watch takes

    max_chars = settings.max_chars
    # a prompt, a text to score or a /sample's whole output: what 64 streams would make
    max_text = max_chars * 64
    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[settings.cors],
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            why = first.get("ctx", {}).get("error", "JSON decode error")
            at = first["loc"][-1] if len(first.get("loc", ())) > 1 else "?"
            return error(400, f"the body is not valid JSON: {why} (at character {at})")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
        return error(422, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Busy)
    async def busy(request: Request, exc: Busy):
        return error(503, f"{exc}: retry soon", "server_busy",
                     **{"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip

    jobs = 0  # /sample and /score requests running now

    async def in_worker(request: Request, work, *args, **kwargs):
        """Run a whole /sample or /score request on a worker thread, at most max_jobs
        at once: each holds a core for as long as it takes, or until its client goes
        away (then it stops at its next character or window)."""
        nonlocal jobs
        if jobs >= settings.max_jobs:
            raise Busy(f"the server is busy ({settings.max_jobs} /sample or /score requests)")
        jobs += 1
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
            running.add_done_callback(lambda _: release_job())

    def release_job() -> None:
        nonlocal jobs
        jobs -= 1

    @app.get("/health")
    async def health():
        return {"status": "ok", "active_streams": engine.active, "served": engine.served,
                "jobs": jobs}  # fmt: skip

    @app.get("/v1/models")
    async def models():
        return {"object": "list",
                "data": [{"id": name, "object": "model", "created": started,
                          "owned_by": "charlstm"}]}  # fmt: skip

    @app.get("/info")
    async def info():
        model = served.model
        m = model.config.model
        return {
            "model": name, "cell": m.cell, "layers": m.num_layers, "hidden": m.hidden_size,
            "parameters": model.net.num_parameters(), "vocab_size": vocab.size,
            "vocab_mode": vocab.mode, "documents": vocab.documents, "labels": list(vocab.labels),
            "step": model.step, "best_val_loss": model.best_val_loss,
        }  # fmt: skip

    @app.post("/sample")
    async def sample(body: SampleRequest, request: Request):
        """charlstm's own sampling: documents, beam search, best-of, labels. Drawn by the
        Model API in a worker thread, beside the batched completions."""
        model = served.model
        options = body.model_dump()
        chars = body.length * max(body.num_samples, body.documents or 1, body.best_of or 1)
        if chars > max_text:
            return error(400, f"at most {max_text:,} characters per request")
        try:
            if model.vocab.documents and body.beam is None and body.best_of is None:
                count = options.pop("documents") or body.num_samples
                for key in ("num_samples", "stop"):
                    options.pop(key)
                prime = options.pop("prime")
                made = await in_worker(request, model.sample_documents, count, prime, **options)
                tally = model.last_tally
                return {"documents": [m.to_dict() for m in made],
                        "drawn": tally.drawn, "repeats": tally.repeats,
                        "places": tally.places if tally.told else None}  # fmt: skip
            if body.documents is not None or body.label is not None:
                return error(400, "documents and label need a document model")
            for key in ("documents", "unique", "novel", "label"):
                options.pop(key)
            if body.beam is not None or body.best_of is not None:
                found = await in_worker(request, model.search, **options)
                return {"text": found.text, "log_prob": found.log_prob, "bpc": found.bpc,
                        "chars": found.chars}  # fmt: skip
            texts = await in_worker(request, model.sample, **options)
            return {"texts": [texts] if isinstance(texts, str) else texts}
        except CharlstmError as err:
            return error(400, str(err))

    @app.post("/score")
    async def score(body: ScoreRequest, request: Request):
        model = served.model
        chars = sum(map(len, body.documents or ())) + len(body.text or "")
        if chars > max_text:
            return error(400, f"at most {max_text:,} characters per request")
        try:
            if body.documents is not None:
                scores = await in_worker(request, model.score_documents, body.documents,
                                                 body.label)  # fmt: skip
                return {"documents": [s.to_dict() for s in scores]}
            if body.text is None:
                return error(400, "give documents (a list of texts) or text")
            result = await in_worker(request, model.score, body.text)
        except CharlstmError as err:
            return error(400, str(err))
        return {"loss": result.loss, "bpc": result.bpc, "chars": result.chars}

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            return error(400, "prompt: give one prompt (a string, or a list of one)")
        prompt = prompts[0]
        if body.max_tokens > max_chars:
            return error(400, f"max_tokens: at most {max_chars} characters per request")
        if len(prompt) > max_text:
            return error(400, f"prompt: at most {max_text:,} characters")
        stops = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        if len(stops) > 4 or any(not s for s in stops):
            return error(400, "stop: up to 4 non-empty strings")
        try:
            settings = SampleSettings(
                length=body.max_tokens, temperature=body.temperature, seed=body.seed,
                top_p=body.top_p if body.top_p < 1.0 else None, top_k=body.top_k,
            )  # fmt: skip
            context = start_context(served.model.vocab, prompt, settings)[1]
        except CharlstmError as err:
            return error(400, str(err))
        events: asyncio.Queue = asyncio.Queue()  # every choice's pieces, by index
        streams = []
        try:
            for i in range(body.n):
                seed = None if body.seed is None else body.seed + i
                one = replace(settings, seed=seed)
                stream = Stream(context, one, stops, events, index=i)
                engine.submit(stream)
                streams.append(stream)
        except Full:
            for s in streams:
                s.cancelled = True
            raise Busy(f"the server is full ({engine.max_streams} streams)") from None
        rid = f"cmpl-{request_id(request.scope)}"
        head = {"id": rid, "object": "text_completion", "created": int(time.time()),
                "model": body.model or name}  # fmt: skip
        if body.stream:
            return StreamingResponse(_sse(head, streams, events, body, prompt, request.scope),
                                     media_type="text/event-stream")  # fmt: skip
        try:
            results = await _collect(events, len(streams))
        finally:
            for s in streams:
                s.cancelled = True
        choices = []
        for i, (text, lps, done) in enumerate(results):
            choice = {"text": (prompt if body.echo else "") + text, "index": i,
                      "finish_reason": done.finish_reason, "logprobs": None}  # fmt: skip
            if body.logprobs is not None:
                choice["logprobs"] = _logprobs(text, lps)
            choices.append(choice)
        generated = sum(done.chars for _, _, done in results)
        note_chars(request.scope, generated)
        usage = {"prompt_tokens": len(prompt), "completion_tokens": generated,
                 "total_tokens": len(prompt) + generated}  # fmt: skip
        return {**head, "choices": choices, "usage": usage}

    return app


async def _collect(events: asyncio.Queue, count: int) -> list[tuple[str, list, Done]]:
    """(text, log-probabilities, Done) of each of `count` choices, in index order."""
    pieces: list[list[str]] = [[] for _ in range(count)]
    lps: list[list[float]] = [[] for _ in range(count)]
    done: list[Done | None] = [None] * count
    left = count
    while left:
        i, item = await events.get()
        if isinstance(item, Done):
            done[i], left = item, left - 1
        else:
            pieces[i].append(item.text)
            lps[i] += item.log_probs
    return [("".join(p), lp, d) for p, lp, d in zip(pieces, lps, done, strict=True)]


def _logprobs(text: str, lps: list[float]) -> dict:
    offsets = list(range(len(text)))
    return {"tokens": list(text), "token_logprobs": lps, "top_logprobs": None,
            "text_offset": offsets}  # fmt: skip


async def _sse(head: dict, streams: list[Stream], events: asyncio.Queue, body, prompt: str,
               scope) -> AsyncIterator[str]:  # fmt: skip
    """Server-sent events, one per piece of any choice; a client that goes away ends
    every stream of its request at once (the engine drops their rows)."""
    try:
        if body.echo:
            for i in range(len(streams)):
                yield _event(head, i, prompt, None, None)
        left, generated = len(streams), 0
        while left:
            # everything that is there now goes out as one event per choice: a busy
            # server sends fewer, longer pieces instead of falling behind
            ready = [await events.get()]
            while not events.empty():
                ready.append(events.get_nowait())
            text: dict[int, list[str]] = {}
            lps: dict[int, list[float]] = {}
            ended = []
            for i, item in ready:
                if isinstance(item, Piece):
                    text.setdefault(i, []).append(item.text)
                    lps.setdefault(i, []).extend(item.log_probs)
                else:
                    ended.append((i, item))
            if text:
                note_first_text(scope)
            for i, pieces in text.items():
                joined = "".join(pieces)
                shown = _logprobs(joined, lps[i]) if body.logprobs is not None else None
                yield _event(head, i, joined, None, shown)
            for i, item in ended:
                left -= 1
                generated += item.chars
                yield _event(head, i, "", item.finish_reason, None)
        note_chars(scope, generated)
        yield "data: [DONE]\n\n"
    finally:
        for s in streams:
            s.cancelled = True


def _event(head: dict, index: int, text: str, finish: str | None, lps) -> str:
    choice = {"text": text, "index": index, "logprobs": lps, "finish_reason": finish}
    return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
