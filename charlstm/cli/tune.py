"""`charlstm tune`: an Optuna study of time-budget runs around a base config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import out
from charlstm.errors import CharlstmError
from charlstm.interrupt import StopRequests

SpaceOpt = Annotated[
    Path | None, typer.Option("--space", help="YAML: key: [choices] or key: {low, high, log}.")
]
StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help="A database URL shared by many processes (postgresql://...); default: a "
        "journal file in the study folder.",
    ),
]


def tune(
    config: Annotated[Path | None, typer.Option("--config", help="The base config (YAML).")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    time_: Annotated[str, typer.Option("--time", help="This process's time: 30m, 2h.")] = "30m",
    trial_time: Annotated[
        str, typer.Option("--trial-time", help="Each trial's training budget: 2m, 180s.")
    ] = "2m",
    space: SpaceOpt = None,
    storage: StorageOpt = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Its name (default: tune-CONFIG).")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="The study folder.")] = None,
    trials: Annotated[int | None, typer.Option("--trials", help="At most this many here.")] = None,
    pruner: Annotated[str, typer.Option("--pruner", help="median, hyperband or none.")] = "median",
    seed: Annotated[int | None, typer.Option("--seed", help="The sampler's seed.")] = None,
) -> None:
    """Search for a better config: an Optuna study whose trials are time-budget runs."""
    from charlstm.options import parse_duration, seed_checks
    from charlstm.training.tune import TuneSettings, optuna_module, run_study, trials_table

    optuna_module()  # missing: one line, before anything else
    ok, rule = seed_checks(seed, "--seed")
    if not ok:
        raise CharlstmError(rule)
    settings = TuneSettings(
        config=config,
        overrides=list(set_ or []),
        seconds=parse_duration(time_, "--time"),
        trial_seconds=parse_duration(trial_time, "--trial-time"),
        space=space,
        storage=storage,
        study=study,
        out=out_dir,
        trials=trials,
        pruner=pruner,
        seed=seed,
    )
    with StopRequests():  # Ctrl-C: the trial in hand saves and stops, then the study
        found, best = run_study(settings, out)
    out.print(trials_table(found))
    if best.is_file():
        out.print(f"best config: {best}\ntrain it with: charlstm train --config {best}")
    else:
        out.print("no trial finished: nothing to write (a longer --time or --trial-time?)")
