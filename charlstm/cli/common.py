"""What every command shares: the two consoles, the options that several commands take
(checkpoint, device, ablation), writing to stdout and files, and the one way a user's
mistake leaves (one line, exit code 1).

Each option's default and help live on its settings field (charlstm/options.py);
`option_of` reads them from there, so the command line, the API and the server agree.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from charlstm.errors import CharlstmError, SettingsError
from charlstm.options import DEVICE_HELP, RUN_DEVICE, help_of

# Windows has no SIGPIPE; a closed pipe there still ends with the status it has on Unix.
SIGPIPE = getattr(signal, "SIGPIPE", 13)

out = Console(highlight=False, soft_wrap=True)  # long paths stay on one line
err = Console(stderr=True, highlight=False, soft_wrap=True)


def option_of(settings: type, name: str, *flags: str, **extra) -> typer.models.OptionInfo:
    """A command-line option whose help is the settings field's own."""
    return typer.Option(*flags, help=help_of(settings, name), **extra)


CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="A checkpoint file or run folder (default: newest run under runs/).",
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help=DEVICE_HELP + ".")]
DEFAULT_DEVICE = RUN_DEVICE
AblateOpt = Annotated[
    str | None,
    typer.Option("--ablate", help="LAYER:UNIT[,...]: hold these units' h and c at 0."),
]


PrimeFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--prime-file", help="Read the prime from this file (-: standard input), up to 64 MB."
    ),
]
# A prime past this is a mistake, not a prime: it is refused before it is read whole.
MAX_PRIME_BYTES = 64 << 20


def read_prime(prime: str, prime_file: Path | None) -> str:
    """--prime, or the text of --prime-file (UTF-8), read at most MAX_PRIME_BYTES + 1
    bytes deep: the command line caps one argument at 128 KiB, a file has no such cap."""
    if prime_file is None:
        return prime
    if prime:
        raise CharlstmError("give --prime TEXT or --prime-file FILE, not both")
    try:
        if str(prime_file) == "-":
            data = sys.stdin.buffer.read(MAX_PRIME_BYTES + 1)
        else:
            with open(prime_file, "rb") as file:
                data = file.read(MAX_PRIME_BYTES + 1)
    except OSError as error:
        raise CharlstmError(f"--prime-file {prime_file}: {error.strerror}") from None
    if len(data) > MAX_PRIME_BYTES:
        raise CharlstmError(f"--prime-file {prime_file} is over {MAX_PRIME_BYTES >> 20} MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CharlstmError(
            f"--prime-file {prime_file} is not valid UTF-8 (byte {error.start})"
        ) from None


def settings_from(cls: type, values: dict):
    """A settings object from a command's parsed options (its `locals()`): every field
    of `cls` is an option of the same name."""
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})


def json_line(obj) -> str:
    """One JSON line, characters as they are, unless one cannot be written as UTF-8 (a
    lone surrogate: a JSON corpus may hold one, and so may its model's vocabulary); then
    escaped, which JSON carries exactly."""
    import json

    text = json.dumps(obj, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj)
    return text + "\n"


def write_out(text: str) -> None:
    """Text to stdout, at once. When the reader has gone (`charlstm sample | head -c 20`)
    the command ends quietly with the status of a process killed by SIGPIPE, as other
    Unix tools do; later writes (Python's own flush at exit) go nowhere. A character the
    output's encoding cannot take (a lone surrogate) is written escaped, not a traceback."""
    try:
        try:
            sys.stdout.write(text)
        except UnicodeEncodeError:
            encoding = sys.stdout.encoding or "utf-8"
            sys.stdout.write(text.encode(encoding, "backslashreplace").decode(encoding))
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(128 + SIGPIPE) from None


def write_file(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        raise CharlstmError(f"cannot write {path}: {error.strerror}") from None


def check_out_file(path: Path | None, option: str) -> None:
    """A file a command will write: its folder must exist (checked before any work)."""
    if path is not None and not path.parent.is_dir():
        raise CharlstmError(f"{option} {path}: no folder {path.parent} to write it in")


def load_model(checkpoint: Path | None, device: str = "cpu", ablate: str | None = None):
    """The model a command runs: its checkpoint (a file, a run folder, or the newest run)
    on the --device asked for, with --ablate's units held at zero when given."""
    from charlstm.api import load
    from charlstm.device import pick_device

    model = load(checkpoint, pick_device(device, "--device"))
    return model.ablated(ablate) if ablate is not None else model


def fail(error: CharlstmError) -> typer.Exit:
    """The one line a user's mistake prints (a settings rule names the flag), and its
    exit code."""
    said = error.with_flags() if isinstance(error, SettingsError) else str(error)
    err.print(f"{error.prefix}{said}", markup=False, soft_wrap=True)
    return typer.Exit(error.exit_code)


def one_line_errors(command: Callable) -> Callable:
    """A command whose CharlstmError leaves as one line and its exit code (wrapped where
    the commands are registered, so no command repeats it)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except CharlstmError as error:
            raise fail(error) from None

    return run
