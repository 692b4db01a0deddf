"""POST /v1/completions in OpenAI's shape: each choice a stream of the engine's batch
(continuous batching, serve/engine.py), answered whole or as server-sent events.

A token is a character (a byte model's: a byte): max_tokens counts them, a prompt may be
sent as their ids (what charlstm's exported tokenizer makes, and what EleutherAI's
evaluation harness sends), and `logprobs` gives each one's log-probability. A list of
prompts gets `n` choices each, indexed prompt by prompt as OpenAI indexes them. With
`echo` and `logprobs`, every prompt token is scored as `charlstm eval` scores a text
(the first, with nothing before it, null), so a harness's log-likelihoods are eval's.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

from fastapi import Request
from fastapi.responses import StreamingResponse

from charlstm.errors import CharlstmError, SettingsError
from charlstm.evaluate import each_log_prob
from charlstm.generate.constraints import Constraint, constraint_for
from charlstm.generate.context import start_context
from charlstm.generate.repetition import check_logit_bias
from charlstm.options import SampleSettings, derived_seed
from charlstm.serve.access import note_chars, note_first_text, request_id
from charlstm.serve.engine import Done, Full, Piece, Stream, shown_token
from charlstm.serve.protocol import MAX_ROWS, MAX_STOPS, CompletionRequest, error, refused
from charlstm.serve.service import Busy, Service, service_of


@dataclass
class Ask:
    """One prompt of a request: its text, how its choices are drawn, where they start."""

    prompt: str
    settings: SampleSettings
    context: list[int]
    constraint: Constraint | None
    read: str = ""  # the prompt as the model reads it (characters it lacks skipped, if so)
    echoed: dict | None = None  # the prompt's own logprobs (echo with logprobs)


def _constraint_of(model, settings, prompt: str) -> Constraint | None:
    """The request's constraint; one that cannot hold is this request's 400."""
    constraint = constraint_for(model.vocab, settings, model.device)
    if constraint is not None:
        constraint.start(model.vocab.encode(prompt, settings.unknown).tolist(), 1)
    return constraint


def prompt_texts(prompt, vocab) -> list[str]:
    """The request's prompts as text: one, a list, or token ids (charlstm's ids, each
    checked against this model's vocabulary)."""
    if isinstance(prompt, str):
        return [prompt]
    if prompt and isinstance(prompt[0], int):
        prompt = [prompt]
    if len(prompt) > MAX_ROWS:  # before any is read
        raise SettingsError(f"`prompt`: at most {MAX_ROWS} prompts in one request")
    texts = []
    for item in prompt:
        if isinstance(item, list):
            bad = next((i for i in item if not 0 <= i < vocab.size), None)
            if bad is not None:
                raise SettingsError(
                    f"`prompt`: token {bad} is no id of this model (ids 0..{vocab.size - 1}: "
                    "its characters, as its exported tokenizer.json numbers them)"
                )
            item = vocab.decode(item)
        texts.append(item)
    return texts or [""]


def check_request(body: CompletionRequest, s: Service, prompts: list[str]) -> None:
    """The rules of a request as a whole (each value's own are the settings')."""
    rows = len(prompts) * body.drawn
    rules = [
        (rows <= MAX_ROWS, f"`prompt`: {len(prompts)} prompts x {body.drawn} completions "
                           f"each is {rows}; at most {MAX_ROWS} in one request"),
        ((body.max_tokens or 0) <= s.max_chars,
         f"`max_tokens`: at most {s.max_chars} characters per request"),
        (sum(map(len, prompts)) <= s.max_text, f"`prompt`: at most {s.max_text:,} characters"),
        (len(body.stops()) <= MAX_STOPS and all(body.stops()),
         f"`stop`: up to {MAX_STOPS} non-empty strings"),
        (body.best_of is None or body.best_of >= body.choices, "`best_of` must be >= `n`"),
        (not (body.stream and body.drawn > body.choices),
         "`best_of` cannot be streamed: its choices are known only at the end"),
        (not body.suffix, "`suffix`: this model writes left to right; it cannot insert text"),
    ]  # fmt: skip
    for ok, message in rules:
        if not ok:
            raise SettingsError(message)


def unknown_model(body, s: Service):
    """OpenAI's answer to a model this server does not serve (None when it does)."""
    if body.model is None or body.model in s.names:
        return None
    names = ", ".join(s.names)
    return error(404, f"The model `{body.model}` does not exist (this server serves {names}; "
                      "charlstm serve --model-name NAME answers to another name)",
                 param="model", code="model_not_found")  # fmt: skip


async def completions(body: CompletionRequest, request: Request):
    s = service_of(request)
    if (wrong := unknown_model(body, s)) is not None:
        return wrong
    model = s.served.model
    try:
        prompts = prompt_texts(body.prompt, model.vocab)
        check_request(body, s, prompts)
        asks = [await ask_for(body, model, prompt) for prompt in prompts]
        if body.echo and body.logprobs is not None:
            for ask in asks:
                ask.echoed = await s.in_worker(request, echo_log_probs, model, ask.prompt,
                                               ask.settings.label, body.logprobs)  # fmt: skip
    except CharlstmError as err:
        return refused(err)
    events: asyncio.Queue = asyncio.Queue()  # every choice's pieces, by index
    rid = request_id(request.scope)
    streams = submit(s, body, asks, events, rid, body.stops())
    head = {"id": f"cmpl-{rid}", "object": "text_completion",
            "created": int(time.time()), "model": body.model or s.name}  # fmt: skip
    if body.stream:
        return StreamingResponse(_sse(head, streams, events, body, asks, request.scope),
                                 media_type="text/event-stream")  # fmt: skip
    results, failure = await gathered(events, streams)
    if failure is not None:
        return failure
    return _whole(head, results, body, asks, request.scope)


async def ask_for(body: CompletionRequest, model, prompt: str, unknown: str = "error") -> Ask:
    """A prompt's settings, start and constraint, each checked (a 400 when not)."""
    settings = replace(body.to_settings(prompt), unknown=unknown)
    check_logit_bias(settings, model.vocab.size)
    read, context = start_context(model.vocab, prompt, settings)
    # its automaton is built off the event loop (seconds at most: generate/automaton.py)
    constraint = await asyncio.to_thread(_constraint_of, model, settings, prompt)
    return Ask(prompt, settings, context, constraint, read)


def echo_log_probs(model, prompt: str, label: str | None, top: int) -> dict:
    """OpenAI's logprobs of the prompt's tokens: each scored given those before it, as
    `charlstm eval` scores a text (a text model's first token, with nothing before it,
    is null); a document model's from the document start, as documents are scored."""
    vocab = model.vocab
    ids = vocab.encode(prompt).tolist()
    if vocab.documents:
        context, scored_ids = vocab.document_start(label), ids
    else:
        context, scored_ids = ids[:1], ids[1:]
    scored = each_log_prob(model.net, context + scored_ids, top)
    lps: list = scored.log_probs
    tops: list = [{shown_token(vocab, i): v for i, v in alts} for alts in scored.top]
    if not vocab.documents and ids:
        lps, tops = [None, *lps], [None, *tops]
    tokens, offsets, at = [], [], 0
    decoder = vocab.stream_decoder()
    for i in ids:
        tokens.append(shown_token(vocab, i))
        offsets.append(at)
        at += len(decoder.feed(i))
    return {"tokens": tokens, "token_logprobs": lps, "top_logprobs": tops if top else None,
            "text_offset": offsets}  # fmt: skip


def submit(s: Service, body, asks: list[Ask], events, request: str,
           stops: tuple[str, ...]) -> list[Stream]:  # fmt: skip
    """`drawn` streams per prompt, each with its own seed (the request's, plus its index
    among its prompt's); all or none: a full engine refuses the request. max_tokens 0
    draws nothing."""
    if body.max_tokens == 0:
        return []
    streams = []
    ranked = body.drawn > body.choices  # best_of: ranked by their log-probabilities
    try:
        for p, ask in enumerate(asks):
            for j in range(body.drawn):
                stream = Stream(ask.context, replace(ask.settings, seed=derived_seed(body.seed, j)),
                                stops, events, index=p * body.drawn + j,
                                top=body.logprobs or 0,
                                log_probs=body.logprobs is not None or ranked,
                                constraint=ask.constraint, request=request)  # fmt: skip
                s.engine.submit(stream)
                streams.append(stream)
    except Full:
        for stream in streams:
            stream.cancelled = True
        raise Busy(f"the server is full ({s.engine.max_streams} streams)") from None
    return streams


def _best(results: list[tuple[Piece, Done]], body) -> list[list[tuple[Piece, Done]]]:
    """Per prompt, its `n` choices: with best_of, the likeliest per token."""
    per_prompt = [results[i : i + body.drawn] for i in range(0, len(results), body.drawn)]
    if body.drawn == body.choices:
        return per_prompt

    def per_token(result) -> float:
        lps = result[0].log_probs
        return sum(lps) / len(lps) if lps else 0.0

    return [sorted(drawn, key=per_token, reverse=True)[: body.choices] for drawn in per_prompt]


def _whole(head: dict, results, body, asks: list[Ask], scope) -> dict:
    if not results:  # max_tokens 0: each choice is its prompt (echo) or nothing
        results = [(Piece("", [], [] if body.logprobs else None), Done("length", 0))] * (
            len(asks) * body.drawn
        )
    choices = []
    for p, (ask, chosen) in enumerate(zip(asks, _best(results, body), strict=True)):
        for j, (piece, done) in enumerate(chosen):
            choice = {"text": (ask.prompt if body.echo else "") + piece.text,
                      "index": p * body.choices + j, "finish_reason": done.finish_reason,
                      "logprobs": None}  # fmt: skip
            if body.logprobs is not None:
                choice["logprobs"] = _logprobs(piece, ask, body.echo)
            choices.append(choice)
    generated = sum(done.chars for _, done in results)
    note_chars(scope, generated)
    return {**head, "choices": choices, "usage": _usage(asks, generated)}


def _usage(asks: list[Ask], generated: int) -> dict:
    prompt = sum(len(ask.prompt) for ask in asks)
    return {"prompt_tokens": prompt, "completion_tokens": generated,
            "total_tokens": prompt + generated}  # fmt: skip


async def gathered(events: asyncio.Queue, streams: list[Stream]):
    """Every choice's (Piece, Done) in index order, the streams ended after (a client
    gone too); and, when a step failed, the 500 to answer instead (None when none)."""
    try:
        results = await collect(events, len(streams)) if streams else []
    finally:
        for stream in streams:
            stream.cancelled = True
    failed = next((done.error for _, done in results if done.error), None)
    if failed is None:
        return results, None
    return results, error(500, f"generating failed ({failed}); other requests were not "
                               "affected", "server_error")  # fmt: skip


async def collect(events: asyncio.Queue, count: int) -> list[tuple[Piece, Done]]:
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


def _logprobs(piece: Piece, ask: Ask, echo: bool, at: int | None = None) -> dict:
    """OpenAI's logprobs object: each character, its log-probability, (logprobs: N) the
    N likeliest characters at its place with theirs, and its offset in prompt and
    completion together; with echo, the prompt's tokens first (ask.echoed)."""
    start = len(ask.prompt) if at is None else at
    made = {"tokens": list(piece.text), "token_logprobs": piece.log_probs,
            "top_logprobs": piece.top,
            "text_offset": list(range(start, start + len(piece.text)))}  # fmt: skip
    if not (echo and ask.echoed):
        return made
    shown = ask.echoed
    joined = {key: shown[key] + made[key] for key in ("tokens", "token_logprobs", "text_offset")}
    tops = shown["top_logprobs"]
    return {**joined, "top_logprobs": None if tops is None else tops + (made["top_logprobs"] or [])}


async def _sse(head: dict, streams: list[Stream], events: asyncio.Queue, body,
               asks: list[Ask], scope) -> AsyncIterator[str]:  # fmt: skip
    """Server-sent events, one per piece of any choice; a client that goes away ends
    every stream of its request at once (the engine drops their rows)."""
    try:
        prompt_of = [ask for ask in asks for _ in range(body.choices)]
        offsets = [len(ask.prompt) for ask in prompt_of]
        if body.echo:
            for i, ask in enumerate(prompt_of):
                shown = ask.echoed if body.logprobs is not None else None
                yield _event(head, i, ask.prompt, None, shown)
        if not streams:  # max_tokens 0
            for i in range(len(prompt_of)):
                yield _event(head, i, "", "length", None)
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
                shown = None
                if body.logprobs is not None:
                    shown = _logprobs(piece, prompt_of[i], False, offsets[i])
                offsets[i] += len(piece.text)
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
        if body.stream_options is not None and body.stream_options.include_usage:
            usage = {**head, "choices": [], "usage": _usage(asks, generated)}
            yield f"data: {json.dumps(usage)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        for s in streams:
            s.cancelled = True


def _event(head: dict, index: int, text: str, finish: str | None, lps) -> str:
    choice = {"text": text, "index": index, "logprobs": lps, "finish_reason": finish}
    return f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
