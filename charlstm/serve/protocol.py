"""What `charlstm serve` speaks: every request body it takes, how each becomes settings,
the caps on one request, and the one error shape.

A request model checks only what belongs to the protocol (its field names, a list's
length, the caps below); every rule on a value (temperature, top_p, a seed's range) is
the settings' own (charlstm/options.py), checked when the request becomes settings, so
one mistake gets one message, the same on every endpoint and in the Python API. Every
refusal of what a client sent is a 400 in OpenAI's error shape (message, type, param,
code), as OpenAI's clients expect.
"""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from charlstm.errors import CharlstmError
from charlstm.options import SampleSettings, SuggestSettings

# The caps on one request. 64 rows (samples, choices or beams) fill a step of the
# engine's batch without crowding out others; a best-of draws its rows for one answer,
# so 256 of them; a /score of 10,000 documents is a few seconds' work on a CPU.
MAX_ROWS = 64
MAX_BEST_OF = 256
MAX_DOCUMENTS = 10_000
MAX_STOPS = 4  # as OpenAI's API allows
MAX_TOP_LOGPROBS = 5  # as OpenAI's completions allow
MAX_CLAMPS = 64  # units held in one request (each copies a column of weights)
# A prompt, a text to score or a /sample's whole output: what MAX_ROWS streams of
# --max-chars characters would make.
TEXT_PER_MAX_CHARS = MAX_ROWS


class SafeJSON(JSONResponse):
    """Every answer's JSON, in ASCII: a string a client sent, lone surrogates included,
    comes back escaped (\\ud800), never as a 500 from the encoder."""

    def render(self, content) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False,
                          separators=(",", ":")).encode("ascii")  # fmt: skip


def error(status: int, message: str, kind: str = "invalid_request_error",
          param: str | None = None, code: str | None = None, **headers) -> SafeJSON:  # fmt: skip
    """The one error body, OpenAI's: {"error": {message, type, param, code}}."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return SafeJSON(body, status_code=status, headers=headers or None)


def refused(err: CharlstmError) -> SafeJSON:
    """A request the settings or the model refuse: 400, naming the field when one is."""
    return error(400, str(err), param=getattr(err, "param", None))


async def invalid_body(request: Request, exc: RequestValidationError) -> SafeJSON:
    """A body that is not JSON, or a field the protocol does not take: 400 naming it."""
    first = exc.errors()[0]
    if first.get("type") == "json_invalid":
        why = first.get("ctx", {}).get("error", "JSON decode error")
        at = first["loc"][-1] if len(first.get("loc", ())) > 1 else "?"
        return error(400, f"the body is not valid JSON: {why} (at character {at})")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    said = f"{where or 'body'}: {first.get('msg', 'invalid')}"
    return error(400, said, param=where or None)


class Strict(BaseModel):
    """A request body: a field it does not know is refused by name."""

    model_config = ConfigDict(extra="forbid")


class ConstraintFields(Strict):
    """Constraints that always hold, by `charlstm sample`'s names (converted with the rest
    of a request to SampleSettings, which checks them)."""

    regex: str | None = None
    contains: list[str] | None = None
    ends_with: str | None = None
    allow: str | None = None
    ban: str | None = None
    min_length: int | None = None
    max_length: int | None = None

    def constraints(self) -> dict:
        return self.model_dump(include=set(ConstraintFields.model_fields), exclude_none=True)


def without_zero_temperature(given: dict) -> dict:
    """temperature 0 is greedy decoding, as OpenAI's API and its clients mean it."""
    if given.get("temperature") == 0:
        given = {k: v for k, v in given.items() if k != "temperature"}
        given.setdefault("greedy", True)
    return given


class SampleRequest(ConstraintFields):
    """POST /sample: every option of `charlstm sample`, by the same names. A field left
    out takes SampleSettings' default: this model holds no default of its own."""

    prime: str | None = None
    length: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool | None = None
    seed: int | None = None
    num_samples: int | None = Field(None, le=MAX_ROWS)
    stop: str | None = None
    unknown: str | None = None
    beam: int | None = Field(None, le=MAX_ROWS)
    best_of: int | None = Field(None, le=MAX_BEST_OF)
    documents: int | None = Field(None, le=MAX_DOCUMENTS)
    unique: bool | None = None
    novel: bool | None = None
    label: str | None = None
    repetition_penalty: float | None = None
    repetition_window: int | None = None
    no_repeat_ngram: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None  # character id -> bias
    clamp: list[str] | None = Field(None, max_length=MAX_CLAMPS)  # "L:U=VALUE"
    # the text as it is drawn (text/plain, in pieces): one sample or one document
    stream: bool = False

    def to_settings(self) -> SampleSettings:
        given = self.model_dump(exclude_none=True, exclude={"stream"})
        return SampleSettings(**without_zero_temperature(given))


class SuggestRequest(Strict):
    """POST /suggest: `charlstm suggest`'s options by the same names; defaults are
    SuggestSettings' and SampleSettings' own."""

    prime: str | None = None
    chars: int | None = None
    words: int | None = None
    unknown: str | None = None
    label: str | None = None
    clamp: list[str] | None = Field(None, max_length=MAX_CLAMPS)  # "L:U=VALUE"

    def to_settings(self) -> tuple[SampleSettings, SuggestSettings]:
        given = self.model_dump(exclude_none=True)
        asked = {k: given.pop(k) for k in ("chars", "words") if k in given}
        return SampleSettings(**given), SuggestSettings(**asked)


class ScoreRequest(Strict):
    """POST /score: a text, or documents (each scored from a document's start)."""

    documents: list[str] | None = Field(None, max_length=MAX_DOCUMENTS)
    text: str | None = None
    label: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False  # a last event with the request's usage, no choices


class CompletionRequest(ConstraintFields):
    """OpenAI's completion request, every field of its specification. Its defaults are
    the protocol's own (16 tokens, temperature 1, the whole distribution), as every
    OpenAI client expects; a token is a character (a byte model's: a byte), and a
    field sent as null takes its default, as OpenAI's API takes it."""

    model: str | None = None
    # text, texts, or token ids (charlstm's character ids: its exported tokenizer's)
    prompt: str | list[str] | list[int] | list[list[int]] = ""
    suffix: str | None = None  # only empty: these models write left to right
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = None  # 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    n: int | None = Field(None, ge=1, le=MAX_ROWS)
    best_of: int | None = Field(None, ge=1, le=MAX_ROWS)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None  # character id -> bias
    user: str | None = None  # taken and ignored, as a server without accounts does
    # and charlstm's own constraints (ConstraintFields)

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def choices(self) -> int:
        """Choices returned per prompt."""
        return self.n or 1

    @property
    def drawn(self) -> int:
        """Completions drawn per prompt: best_of of them, the likeliest `n` returned."""
        return max(self.best_of or 1, self.choices)

    def to_settings(self, prompt: str) -> SampleSettings:
        """How each choice is drawn (its seed moved on by its index), as SampleSettings."""
        given = {"temperature": 1.0 if self.temperature is None else self.temperature}
        return SampleSettings(
            prime=prompt, length=16 if self.max_tokens is None else self.max_tokens,
            seed=self.seed, top_k=self.top_k,
            top_p=self.top_p if self.top_p not in (None, 1.0) else None,
            frequency_penalty=self.frequency_penalty or 0.0,
            presence_penalty=self.presence_penalty or 0.0, logit_bias=self.logit_bias or (),
            **without_zero_temperature(given), **self.constraints(),
        )  # fmt: skip
