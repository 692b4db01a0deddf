"""`charlstm tasks generate`: write examples of a synthetic language."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import check_out_file, one_line_errors, option_of, out, write_file
from charlstm.options import TaskCorpus, TaskExamples

app = typer.Typer(help="Synthetic languages from the exploring-LSTMs experiments.")
Written, Sizes = TaskCorpus(), TaskExamples()


@app.command("generate")
@one_line_errors
def generate(
    name: Annotated[str, typer.Argument(help="counter, selective-counter, state or copy.")],
    out_file: Annotated[Path, typer.Option("--out", help="File to write, one example per line.")],
    count: Annotated[int, option_of(TaskCorpus, "count", "--count")] = Written.count,
    seed: Annotated[int, option_of(TaskCorpus, "seed", "--seed")] = Written.seed,
    n_min: Annotated[int, option_of(TaskExamples, "n_min", "--n-min")] = Sizes.n_min,
    n_max: Annotated[int, option_of(TaskExamples, "n_max", "--n-max")] = Sizes.n_max,
) -> None:
    """Write examples of a synthetic task (train on them with data.path: task:NAME)."""
    from charlstm.data.tasks import check_task_options, corpus_text

    check_task_options(name, count, n_min, n_max)
    check_out_file(out_file, "--out")
    write_file(out_file, corpus_text(name, count, seed, n_min, n_max))
    out.print(f"wrote {count} {name} examples to {out_file}")
