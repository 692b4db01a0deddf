"""The HTTP side of `charlstm serve`: FastAPI (Typer's sibling: typed request models)
on uvicorn; the request models, the caps and the error shape are serve/protocol.py's.

Endpoints: POST /v1/completions and /v1/chat/completions in OpenAI's shape
(serve/completions.py, serve/chat.py), GET /v1/models, and charlstm's own POST
/sample (every option of `charlstm sample`), POST /suggest (`charlstm suggest`), POST
/score, GET /info and GET /health. Each request model converts to the one settings
object (`to_settings`). Requests never name files on the server.
"""

from __future__ import annotations

import contextlib
import functools

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from charlstm.errors import CharlstmError
from charlstm.options import ServeSettings
from charlstm.serve.chat import chat_completions
from charlstm.serve.completions import completions
from charlstm.serve.engine import Engine
from charlstm.serve.protocol import (
    SafeJSON,
    SampleRequest,
    ScoreRequest,
    SuggestRequest,
    error,
    invalid_body,
    refused,
)
from charlstm.serve.service import RETRY_AFTER_S, Busy, Service, service_of


def create_app(served, engine: Engine, name: str, settings: ServeSettings) -> FastAPI:
    """The app around one Service. The API key and the access log are the
    middleware's (serve/access.py), around this app."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # the engine steps on this loop; it stops after the last response has drained
        await engine.start()
        yield
        await engine.close()

    app = FastAPI(title="charlstm", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan, default_response_class=SafeJSON)  # fmt: skip
    app.state.service = Service(served, engine, name, settings)
    if settings.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=[settings.cors],
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])  # fmt: skip
    app.add_exception_handler(RequestValidationError, invalid_body)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Busy, busy)
    openai = [("/v1/completions", completions, "POST"),
              ("/v1/chat/completions", chat_completions, "POST")]  # fmt: skip
    for path, endpoint, method in ROUTES + openai:
        app.add_api_route(path, endpoint, methods=[method])
    return app


async def http_error(request: Request, exc: StarletteHTTPException):
    """The framework's own refusals (no such path, a method not allowed, a body that
    cannot be read) in the server's one error shape."""
    return error(exc.status_code, str(exc.detail), **(exc.headers or {}))


async def busy(request: Request, exc: Busy):
    return error(503, f"{exc}: retry soon", "server_busy",
                 **{"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip


async def playground(request: Request):
    """The playground page (serve/web/): the API, from a browser."""
    return HTMLResponse(_playground_page())


@functools.cache
def _playground_page() -> str:
    from charlstm.templates import render_page

    return render_page("charlstm.serve", "playground.html", "playground.js")


async def health(request: Request):
    """ok, or 503 when the engine has stopped or stalled (a supervisor restarts it)."""
    s = service_of(request)
    numbers = {"active_streams": s.engine.active, "served": s.engine.served, "jobs": s.jobs,
               "failed_steps": s.engine.failed_steps}  # fmt: skip
    trouble = s.engine.health
    if trouble is not None:
        return SafeJSON({"status": "unhealthy", "why": trouble, **numbers}, status_code=503)
    return {"status": "ok", **numbers}


async def models(request: Request):
    s = service_of(request)
    return {"object": "list",
            "data": [{"id": s.name, "object": "model", "created": s.started,
                      "owned_by": "charlstm"}]}  # fmt: skip


async def info(request: Request):
    s = service_of(request)
    model = s.served.model
    m, vocab = model.config.model, model.vocab
    return {
        "model": s.name, "cell": m.cell, "layers": m.num_layers, "hidden": m.hidden_size,
        "parameters": model.net.num_parameters(), "vocab_size": vocab.size,
        "vocab_mode": vocab.mode, "documents": vocab.documents, "labels": list(vocab.labels),
        "step": model.step, "best_val_loss": model.best_val_loss,
    }  # fmt: skip


async def sample(body: SampleRequest, request: Request):
    """charlstm's own sampling, documents, beam search, best-of and labels included:
    Model.generate in a worker thread, beside the batched completions."""
    s = service_of(request)
    try:
        settings = body.to_settings()
    except CharlstmError as err:
        return refused(err)
    if settings.chars_asked > s.max_text:
        return error(400, f"at most {s.max_text:,} characters per request")
    try:
        if body.stream:  # a document, or a search, is made whole before its one piece
            pieces = await s.in_worker(request, s.served.model.stream_settings, settings)
            s.take_job()
            return StreamingResponse(s.streamed(pieces), media_type="text/plain; charset=utf-8")
        made = await s.in_worker(request, s.served.model.generate, settings)
    except CharlstmError as err:
        return refused(err)
    return made.to_dict()


async def suggest(body: SuggestRequest, request: Request):
    """The likeliest next characters and words (or a document model's completions),
    with the model's own probabilities."""
    s = service_of(request)
    try:
        settings, asked = body.to_settings()
    except CharlstmError as err:
        return refused(err)
    if len(settings.prime) > s.max_text:
        return error(400, f"prime: at most {s.max_text:,} characters")
    try:
        found = await s.in_worker(request, s.served.model.suggest, settings, asked)
    except CharlstmError as err:
        return refused(err)
    return {kind: [one.to_dict() for one in listed] for kind, listed in found.items()}


async def score(body: ScoreRequest, request: Request):
    s = service_of(request)
    model = s.served.model
    chars = sum(map(len, body.documents or ())) + len(body.text or "")
    if chars > s.max_text:
        return error(400, f"at most {s.max_text:,} characters per request")
    try:
        if body.documents is not None:
            scores = await s.in_worker(request, model.score_documents, body.documents,
                                       body.label)  # fmt: skip
            return {"documents": [d.to_dict() for d in scores]}
        if body.text is None:
            return error(400, "give documents (a list of texts) or text")
        result = await s.in_worker(request, model.score, body.text)
    except CharlstmError as err:
        return refused(err)
    return {"loss": result.loss, "bpc": result.bpc, "chars": result.chars}


ROUTES = [
    ("/", playground, "GET"),
    ("/health", health, "GET"),
    ("/v1/models", models, "GET"),
    ("/info", info, "GET"),
    ("/sample", sample, "POST"),
    ("/score", score, "POST"),
    ("/suggest", suggest, "POST"),
]
