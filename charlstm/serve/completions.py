"""POST /v1/completions in OpenAI's shape: each choice a stream of the engine's batch
(continuous batching, serve/engine.py), answered whole or as server-sent events.
max_tokens counts characters; `logprobs` gives each character's log-probability.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace

from fastapi import Request
from fastapi.responses import StreamingResponse

from charlstm.errors import CharlstmError
from charlstm.generate.constraints import Constraint, constraint_for
from charlstm.generate.context import start_context
from charlstm.options import SampleSettings, derived_seed
from charlstm.serve.access import note_chars, note_first_text, request_id
from charlstm.serve.engine import Done, Full, Piece, Stream
from charlstm.serve.protocol import MAX_STOPS, CompletionRequest, error, refused
from charlstm.serve.service import Busy, Service, service_of


def _constraint_of(model, settings, prompt: str) -> Constraint | None:
    """The request's constraint; one that cannot hold is this request's 400."""
    constraint = constraint_for(model.vocab, settings, model.device)
    if constraint is not None:
        constraint.start(model.vocab.encode(prompt, settings.unknown).tolist(), 1)
    return constraint


async def completions(body: CompletionRequest, request: Request):
    s = service_of(request)
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        return error(400, "prompt: give one prompt (a string, or a list of one)")
    prompt = prompts[0]
    if body.max_tokens > s.max_chars:
        return error(400, f"max_tokens: at most {s.max_chars} characters per request")
    if len(prompt) > s.max_text:
        return error(400, f"prompt: at most {s.max_text:,} characters")
    stops = body.stops()
    if len(stops) > MAX_STOPS or any(not stop for stop in stops):
        return error(400, f"stop: up to {MAX_STOPS} non-empty strings")
    try:
        settings = body.to_settings(prompt)
        model = s.served.model
        context = start_context(model.vocab, prompt, settings)[1]
        # its automaton is built off the event loop (seconds at most: generate/automaton.py)
        constraint = await asyncio.to_thread(_constraint_of, model, settings, prompt)
    except CharlstmError as err:
        return refused(err)
    events: asyncio.Queue = asyncio.Queue()  # every choice's pieces, by index
    rid = request_id(request.scope)
    streams = _submit(s, body, settings, context, stops, events, constraint, rid)
    head = {"id": f"cmpl-{rid}", "object": "text_completion",
            "created": int(time.time()), "model": body.model or s.name}  # fmt: skip
    if body.stream:
        return StreamingResponse(_sse(head, streams, events, body, prompt, request.scope),
                                 media_type="text/event-stream")  # fmt: skip
    try:
        results = await _collect(events, len(streams))
    finally:
        for stream in streams:
            stream.cancelled = True
    failed = next((done.error for _, done in results if done.error), None)
    if failed is not None:
        return error(500, f"generating failed ({failed}); other requests were not affected",
                     "server_error")  # fmt: skip
    return _whole(head, results, body, prompt, request.scope)


def _submit(s: Service, body, settings: SampleSettings, context, stops, events,
            constraint: Constraint | None, request: str) -> list[Stream]:  # fmt: skip
    """One stream per choice, each with its own seed (the request's, plus its index);
    all or none: a full engine refuses the request."""
    streams = []
    try:
        for i in range(body.n):
            seed = derived_seed(body.seed, i)
            stream = Stream(context, replace(settings, seed=seed), stops, events, index=i,
                            top=body.logprobs or 0, log_probs=body.logprobs is not None,
                            constraint=constraint,
                            request=request)  # fmt: skip
            s.engine.submit(stream)
            streams.append(stream)
    except Full:
        for stream in streams:
            stream.cancelled = True
        raise Busy(f"the server is full ({s.engine.max_streams} streams)") from None
    return streams


def _whole(head: dict, results, body, prompt: str, scope) -> dict:
    choices = []
    for i, (piece, done) in enumerate(results):
        choice = {"text": (prompt if body.echo else "") + piece.text, "index": i,
                  "finish_reason": done.finish_reason, "logprobs": None}  # fmt: skip
        if body.logprobs is not None:
            choice["logprobs"] = _logprobs(piece)
        choices.append(choice)
    generated = sum(done.chars for _, done in results)
    note_chars(scope, generated)
    usage = {"prompt_tokens": len(prompt), "completion_tokens": generated,
             "total_tokens": len(prompt) + generated}  # fmt: skip
    return {**head, "choices": choices, "usage": usage}


async def _collect(events: asyncio.Queue, count: int) -> list[tuple[Piece, Done]]:
    """(all its text as one Piece, Done) of each of `count` choices, in index order."""
    pieces: list[list[Piece]] = [[] for _ in range(count)]
    done: list[Done | None] = [None] * count
    left = count
    while left:
        i, item = await events.get()
        if isinstance(item, Done):
            done[i], left = item, left - 1
        else:
            pieces[i].append(item)
    return [(_joined(p), d) for p, d in zip(pieces, done, strict=True)]


def _joined(pieces: list[Piece]) -> Piece:
    tops = [t for p in pieces for t in p.top] if pieces and pieces[0].top is not None else None
    return Piece("".join(p.text for p in pieces), [lp for p in pieces for lp in p.log_probs],
                 tops)  # fmt: skip


def _logprobs(piece: Piece) -> dict:
    """OpenAI's logprobs object: each character, its log-probability, and (logprobs: N)
    the N likeliest characters at its place with theirs."""
    offsets = list(range(len(piece.text)))
    return {"tokens": list(piece.text), "token_logprobs": piece.log_probs,
            "top_logprobs": piece.top, "text_offset": offsets}  # fmt: skip


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
            made: dict[int, list[Piece]] = {}
            ended = []
            for i, item in ready:
                if isinstance(item, Piece):
                    made.setdefault(i, []).append(item)
                else:
                    ended.append((i, item))
            if made:
                note_first_text(scope)
            for i, pieces in made.items():
                piece = _joined(pieces)
                shown = _logprobs(piece) if body.logprobs is not None else None
                yield _event(head, i, piece.text, None, shown)
            for i, item in ended:
                left -= 1
                generated += item.chars
                yield _event(head, i, "", item.finish_reason, None)
                if item.error is not None:  # the stream's end says why, as an error event
                    failure = {"message": f"generating failed ({item.error})",
                               "type": "server_error"}  # fmt: skip
                    yield f"data: {json.dumps({'error': failure})}\n\n"
        note_chars(scope, generated)
        yield "data: [DONE]\n\n"
    finally:
        for s in streams:
            s.cancelled = True


def _event(head: dict, index: int, text: str, finish: str | None, lps) -> str:
    choice = {"text": text, "index": index, "logprobs": lps, "finish_reason": finish}
    return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
