"""`charlstm train`: a config (and overrides) in, a run folder out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import out
from charlstm.errors import CharlstmError
from charlstm.interrupt import StopRequests
from charlstm.rundir import RunDir


def train(
    corpus: Annotated[
        Path | None,
        typer.Argument(
            help="A corpus (file or folder) to train on with the model charlstm chooses "
            "for it (train.auto); the run goes to runs/NAME."
        ),
    ] = None,
    time_: Annotated[
        str | None,
        typer.Option("--time", help="A time budget: 90s, 10m, 1h (train.max_seconds)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue the run in this folder from its last.pt."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Plain progress lines, no bar.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the run already in train.out_dir.")
    ] = False,
) -> None:
    """Train a model: on a corpus for a time (charlstm train notes.txt --time 10m), or from
    a config (see configs/)."""
    from charlstm.config import load_config
    from charlstm.training.resume import restart_run, resume_checkpoint
    from charlstm.training.trainer import Trainer

    saved, run = None, None
    chosen, notes = newcomer_overrides(corpus, time_, config, resume, set_ or [])
    overrides = [*chosen, *(set_ or [])]
    if notes:
        out.print("\n".join(notes), markup=False)
    if resume is None:
        cfg = load_config(config, overrides)
        run = restart_run(cfg)  # under torchrun, after a rank died
        overwrite = overwrite and run is None
    if resume is not None or run is not None:
        saved, run = resume_checkpoint(resume if resume is not None else run.root)
        overrides = [f"train.out_dir={run}", *overrides]
        cfg = load_config(config, overrides) if config else saved.config.with_overrides(overrides)
    with StopRequests():
        trainer = Trainer(cfg, resume=saved, console=out, quiet=quiet, overwrite=overwrite)
        summary = trainer.run()
    if trainer.is_main:  # under torchrun, one summary for the whole run
        print_summary(summary)


def print_summary(summary) -> None:
    from charlstm.model import bits_per_char

    run = RunDir(summary.out_dir)
    best = summary.best_val_loss
    out.print(
        f"done: {summary.steps} steps in {summary.seconds:.0f}s ({summary.ended_by}), best "
        f"val loss {best:.4f} ({bits_per_char(best):.4f} bpc)\n"
        f"checkpoints: {run.best} and {run.last}\n"
        f'sample with: charlstm sample --checkpoint {summary.out_dir} --prime "..."'
    )


def newcomer_overrides(
    corpus: Path | None,
    budget: str | None,
    config: Path | None,
    resume: Path | None,
    given: list[str],
) -> tuple[list[str], list[str]]:
    """`charlstm train PATH --time T`: the corpus, the budget and train.auto, as overrides
    the config file and --set may still change; and the lines that say what was decided."""
    from charlstm.data.lists import list_of_lines
    from charlstm.options import parse_duration

    overrides, notes = [], []
    if corpus is None and config is None and resume is None and not given:
        raise CharlstmError(
            "train what? give a corpus and a time (charlstm train notes.txt --time 10m), "
            "a config (charlstm train --config configs/tiny.yaml) or --resume RUN"
        )
    if corpus is not None and resume is not None:
        raise CharlstmError("give a corpus to train on or --resume a run, not both")
    if budget is not None:
        overrides.append(f"train.max_seconds={parse_duration(budget, '--time')}")
    if corpus is not None:
        if not corpus.exists():  # before any run folder is looked at or made
            raise CharlstmError(f"corpus not found: {corpus}")
        # ./null, not null: a file named like a YAML word is still a file
        named = f"./{corpus}" if str(corpus).lower() in ("null", "none", "~") else corpus
        overrides += [f"data.path={named}", "train.auto=true"]
        if config is None:
            overrides.append(f"train.out_dir={RunDir.for_corpus(corpus)}")
            told = any(g.split("=", 1)[0].strip() == "data.documents" for g in given)
            reason = None if told else list_of_lines(corpus)
            if reason is not None:
                overrides.append("data.documents=lines")
                notes.append(reason)
    return overrides, notes
