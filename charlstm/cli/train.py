"""`charlstm train`: a config (and overrides) in, a run folder out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import fail, out
from charlstm.errors import CharlstmError
from charlstm.interrupt import StopRequests
from charlstm.rundir import RunDir


def train(
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
    """Train a model (see configs/ for examples)."""
    from charlstm.config import load_config
    from charlstm.evaluate import bits_per_char
    from charlstm.training.resume import restart_run, resume_checkpoint
    from charlstm.training.trainer import Trainer

    try:
        saved, overrides = None, list(set_ or [])
        run = None
        if resume is None:
            cfg = load_config(config, overrides)
            run = restart_run(cfg)  # under torchrun, after a rank died
            overwrite = overwrite and run is None
        if resume is not None or run is not None:
            saved, run = resume_checkpoint(resume if resume is not None else run.root)
            overrides = [f"train.out_dir={run}", *overrides]
            cfg = (
                load_config(config, overrides) if config else saved.config.with_overrides(overrides)
            )
        with StopRequests():
            trainer = Trainer(cfg, resume=saved, console=out, quiet=quiet, overwrite=overwrite)
            summary = trainer.run()
    except CharlstmError as error:
        raise fail(error) from None
    if not trainer.is_main:  # under torchrun, one summary for the whole run
        return
    run = RunDir(summary.out_dir)
    best = summary.best_val_loss
    out.print(
        f"done: {summary.steps} steps in {summary.seconds:.0f}s, best val loss "
        f"{best:.4f} ({bits_per_char(best):.4f} bpc)\n"
        f"checkpoints: {run.best} and {run.last}\n"
        f'sample with: charlstm sample --checkpoint {summary.out_dir} --prime "..."'
    )
