"""The `charlstm` command: one module per command family, registered in the table
below. Each command parses its options, calls the API (charlstm/api.py) and prints.

A CharlstmError (a user's mistake) leaves as one line on stderr and exit code 1; so do
the command-line parser's own complaints when run through `main`.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from charlstm import __version__
from charlstm.cli import (
    evaluate,
    export,
    info,
    inspect,
    probe,
    sample,
    serve,
    suggest,
    tasks,
    train,
    tune,
)
from charlstm.cli.common import err, one_line_errors, out

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "key: [choices]" is not a markup tag
    help="Character-level LSTM language models: train, tune, sample, suggest, eval, "
    "inspect, probe, export, serve, info and tasks.",
)

# name -> the command; the first line of each docstring is its summary in --help.
COMMANDS = {
    "train": train.train,
    "tune": tune.tune,
    "sample": sample.sample,
    "suggest": suggest.suggest,
    "eval": evaluate.evaluate,
    "inspect": inspect.inspect,
    "probe": probe.probe,
    "export": export.export,
    "serve": serve.serve,
    "info": info.info,
}
for name, command in COMMANDS.items():
    app.command(name)(one_line_errors(command))
app.add_typer(tasks.app, name="tasks")


def _print_version(wanted: bool) -> None:
    if wanted:
        out.print(f"charlstm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    """Console entry point: parser errors become one line and exit code 1 too."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err.print("error: aborted", markup=False)
        sys.exit(130)
    except Exception as error:  # the parser's UsageError family (click's, or Typer's copy)
        format_message = getattr(error, "format_message", None)
        if format_message is None:
            raise
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare `charlstm`: help was shown
            sys.exit(0)
        err.print(f"error: {format_message()}", markup=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
