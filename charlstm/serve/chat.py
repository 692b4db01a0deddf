"""POST /v1/chat/completions: what chat clients speak (chat UIs, agent frameworks,
editors), on the same engine as /v1/completions.

The messages become the model's text by a chat template, as Hugging Face chat models'
do: Jinja, run sandboxed (a run's config may come from anyone), given `messages` (each
with role, content and name) and `add_generation_prompt`. A run sets its own as
serve.chat_template; the default writes the play format a dialogue corpus is in,

    USER:
    Good morrow.

    ASSISTANT:

and the answer ends at `serve.chat_end` (a blank line: the end of a speech), or, for a
document model, at the document's end (it answers one document). Characters of the
messages outside the model's vocabulary are dropped (a chat client cannot be asked to
write only what the corpus had); `charlstm serve --show-prompt` logs the text each
request became.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator

import jinja2
from fastapi import Request
from fastapi.responses import StreamingResponse
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from charlstm.errors import CharlstmError, SettingsError
from charlstm.serve.access import note_chars, note_first_text, request_id
from charlstm.serve.completions import (
    Ask,
    ask_for,
    check_request,
    gathered,
    submit,
    unknown_model,
)
from charlstm.serve.engine import Done, Piece, Stream
from charlstm.serve.protocol import (
    MAX_ROWS,
    MAX_TOP_LOGPROBS,
    CompletionRequest,
    ConstraintFields,
    StreamOptions,
    refused,
)
from charlstm.serve.service import service_of

DEFAULT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ (message.name or message.role) | upper }}:\n{{ message.content }}\n\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:\n{% endif %}"
)
MAX_MESSAGES = 1000


class Message(BaseModel):
    """One message; fields a client adds beyond these (ids, tool calls) are ignored."""

    model_config = ConfigDict(extra="ignore")

    role: str
    content: str | list[dict] | None = None
    name: str | None = None

    def text(self, at: int) -> str:
        """The content as text: a string, or its text parts joined."""
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        parts = []
        for part in self.content:
            if part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise SettingsError(f"`messages` {at}: this model reads text parts only")
            parts.append(part["text"])
        return "".join(parts)


class ChatRequest(ConstraintFields):
    """OpenAI's chat completion request (the fields a character model can honour)."""

    model: str | None = None
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)  # the newer name of max_tokens
    temperature: float | None = None
    top_p: float | None = None
    n: int | None = Field(None, ge=1, le=MAX_ROWS)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    def as_completion(self, prompt: str) -> CompletionRequest:
        """The same request as a completion of the rendered prompt."""
        chat_only = {"messages", "max_completion_tokens", "logprobs", "top_logprobs"}
        given = self.model_dump(exclude_none=True, exclude=chat_only)
        given["max_tokens"] = self.max_completion_tokens or self.max_tokens
        if self.logprobs:
            given["logprobs"] = self.top_logprobs or 0
        return CompletionRequest(**given, prompt=prompt)


@functools.lru_cache(maxsize=8)
def compiled(template: str) -> jinja2.Template:
    """A chat template, compiled once, in a sandbox: it can read its variables but
    not reach Python's attributes or the server's files."""
    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    try:
        return env.from_string(template)
    except jinja2.TemplateSyntaxError as err:
        raise SettingsError(f"serve.chat_template line {err.lineno}: {err.message}") from None


def render(template: str, messages: list[Message], limit: int) -> str:
    """The messages as the model's text; at most `limit` characters."""
    given = [{"role": m.role, "content": m.text(i), "name": m.name}
             for i, m in enumerate(messages)]  # fmt: skip
    try:  # written piece by piece, and stopped past the limit: a loop cannot fill memory
        pieces, written = [], 0
        for piece in compiled(template).generate(messages=given, add_generation_prompt=True):
            pieces.append(piece)
            written += len(piece)
            if written > limit:
                break
        text = "".join(pieces)
    except jinja2.TemplateError as err:
        raise SettingsError(f"serve.chat_template could not write the messages: {err}") from None
    if len(text) > limit:
        raise SettingsError(f"`messages`: written out, at most {limit:,} characters")
    return text


async def chat_completions(body: ChatRequest, request: Request):
    s = service_of(request)
    if (wrong := unknown_model(body, s)) is not None:
        return wrong
    model = s.served.model
    served = model.config.serve
    try:
        prompt = await asyncio.to_thread(render, served.chat_template or DEFAULT_TEMPLATE,
                                         body.messages, s.max_text)  # fmt: skip
        asked = body.as_completion(prompt)
        check_request(asked, s, [prompt])
        ask = await ask_for(asked, model, prompt, unknown="skip")
    except CharlstmError as err:
        return refused(err)
    rid = request_id(request.scope)
    if s.settings.show_prompt:
        s.engine.say(f"{rid}: the chat became {ask.read!r}")
    # a document model's answer is one document: it ends at the document's end
    stops = asked.stops() if model.vocab.documents else (served.chat_end, *asked.stops())
    events: asyncio.Queue = asyncio.Queue()
    streams = submit(s, asked, [ask], events, rid, stops)
    head = {"id": f"chatcmpl-{rid}", "created": int(time.time()),
            "model": body.model or s.name}  # fmt: skip
    if body.stream:
        return StreamingResponse(_sse(head, streams, events, asked, ask, request.scope),
                                 media_type="text/event-stream")  # fmt: skip
    results, failure = await gathered(events, streams)
    if failure is not None:
        return failure
    return _whole(head, results, asked, ask, request.scope)


def _content_logprobs(piece: Piece) -> dict:
    """The chat API's logprobs: per token, its text, bytes, log-probability and the
    likeliest alternatives."""

    def entry(token: str, lp: float) -> dict:
        return {"token": token, "logprob": lp, "bytes": list(token.encode("utf-8", "replace"))}

    tops = piece.top or [{}] * len(piece.text)
    content = [
        {**entry(token, lp), "top_logprobs": [entry(t, v) for t, v in top.items()]}
        for token, lp, top in zip(piece.text, piece.log_probs, tops, strict=True)
    ]
    return {"content": content}


def _whole(head: dict, results, asked: CompletionRequest, ask: Ask, scope) -> dict:
    if not results:  # max_tokens 0
        results = [(Piece("", []), Done("length", 0))] * asked.choices
    choices = []
    for i, (piece, done) in enumerate(results):
        lps = _content_logprobs(piece) if asked.logprobs is not None else None
        choices.append({"index": i, "message": {"role": "assistant", "content": piece.text},
                        "logprobs": lps, "finish_reason": done.finish_reason})  # fmt: skip
    generated = sum(done.chars for _, done in results)
    note_chars(scope, generated)
    return {**head, "object": "chat.completion", "choices": choices,
            "usage": _usage(ask, generated)}  # fmt: skip


def _usage(ask: Ask, generated: int) -> dict:
    return {"prompt_tokens": len(ask.prompt), "completion_tokens": generated,
            "total_tokens": len(ask.prompt) + generated}  # fmt: skip


def _chunk(head: dict, index: int, delta: dict, finish: str | None, lps=None) -> str:
    choice = {"index": index, "delta": delta, "logprobs": lps, "finish_reason": finish}
    chunk = {**head, "object": "chat.completion.chunk", "choices": [choice]}
    return f"data: {json.dumps(chunk)}\n\n"


async def _sse(head: dict, streams: list[Stream], events: asyncio.Queue,
               asked: CompletionRequest, ask: Ask, scope) -> AsyncIterator[str]:  # fmt: skip
    """Chunks as chat clients read them: the role first, then the content in pieces,
    then each choice's finish_reason; the usage last when asked for."""
    try:
        for i in range(asked.choices):
            yield _chunk(head, i, {"role": "assistant", "content": ""}, None)
        left, generated = len(streams), 0
        if not streams:  # max_tokens 0
            for i in range(asked.choices):
                yield _chunk(head, i, {}, "length")
        while left:
            i, item = await events.get()
            if isinstance(item, Piece):
                note_first_text(scope)
                lps = _content_logprobs(item) if asked.logprobs is not None else None
                yield _chunk(head, i, {"content": item.text}, None, lps)
                continue
            left -= 1
            generated += item.chars
            yield _chunk(head, i, {}, item.finish_reason)
            if item.error is not None:
                failure = {"message": f"generating failed ({item.error})", "type": "server_error"}
                yield f"data: {json.dumps({'error': failure})}\n\n"
        note_chars(scope, generated)
        if asked.stream_options is not None and asked.stream_options.include_usage:
            last = {**head, "object": "chat.completion.chunk", "choices": [],
                    "usage": _usage(ask, generated)}  # fmt: skip
            yield f"data: {json.dumps(last)}\n\n"
        yield "data: [DONE]\n\n"
    finally:
        for stream in streams:
            stream.cancelled = True
