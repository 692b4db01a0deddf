"""`charlstm serve`: parse ServeSettings, load the model, hand both to serve/server.py."""

from __future__ import annotations

from typing import Annotated

from charlstm.cli.common import CheckpointOpt, err, load_model, option_of, settings_from
from charlstm.errors import CharlstmError
from charlstm.options import ServeSettings

Serve = ServeSettings()


def serve(
    checkpoint: CheckpointOpt = None,
    host: Annotated[str, option_of(ServeSettings, "host", "--host")] = Serve.host,
    port: Annotated[int, option_of(ServeSettings, "port", "--port")] = Serve.port,
    api_key: Annotated[
        str | None,
        option_of(ServeSettings, "api_key", "--api-key", envvar="CHARLSTM_API_KEY"),
    ] = Serve.api_key,
    cors: Annotated[str | None, option_of(ServeSettings, "cors", "--cors")] = Serve.cors,
    allow_host: Annotated[
        list[str] | None, option_of(ServeSettings, "allow_host", "--allow-host")
    ] = None,
    model_name: Annotated[
        list[str] | None, option_of(ServeSettings, "model_name", "--model-name")
    ] = None,
    show_prompt: Annotated[
        bool, option_of(ServeSettings, "show_prompt", "--show-prompt")
    ] = Serve.show_prompt,
    max_streams: Annotated[
        int, option_of(ServeSettings, "max_streams", "--max-streams")
    ] = Serve.max_streams,
    max_chars: Annotated[
        int, option_of(ServeSettings, "max_chars", "--max-chars")
    ] = Serve.max_chars,
    max_jobs: Annotated[int, option_of(ServeSettings, "max_jobs", "--max-jobs")] = Serve.max_jobs,
    read_timeout_s: Annotated[
        float, option_of(ServeSettings, "read_timeout_s", "--read-timeout-s")
    ] = Serve.read_timeout_s,
    max_connections: Annotated[
        int, option_of(ServeSettings, "max_connections", "--max-connections")
    ] = Serve.max_connections,
    max_body_mb: Annotated[
        float, option_of(ServeSettings, "max_body_mb", "--max-body-mb")
    ] = Serve.max_body_mb,
    interval_ms: Annotated[
        float, option_of(ServeSettings, "interval_ms", "--interval-ms")
    ] = Serve.interval_ms,
    watch: Annotated[bool, option_of(ServeSettings, "watch", "--watch")] = Serve.watch,
    drain_s: Annotated[float, option_of(ServeSettings, "drain_s", "--drain-s")] = Serve.drain_s,
    device: Annotated[str, option_of(ServeSettings, "device", "--device")] = Serve.device,
    threads: Annotated[int, option_of(ServeSettings, "threads", "--threads")] = Serve.threads,
) -> None:
    """Serve a model over HTTP, OpenAI's completions API included.

    POST /v1/completions (streaming too), GET /v1/models, and charlstm's own POST
    /sample, /suggest and /score, GET /info and /health, and a playground at GET /;
    concurrent requests share each recurrent step."""
    settings = settings_from(ServeSettings, locals())
    _check_extra()
    from charlstm.serve.server import serve as run_server

    run_server(load_model(checkpoint, device), settings, err)


def _check_extra() -> None:
    """One line when the serve extra is not installed."""
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise CharlstmError(
            "charlstm serve needs its extra: pip install 'charlstm[serve]'"
        ) from None
