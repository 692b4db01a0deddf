"""`charlstm tune`: an Optuna study of time-budget runs around a base config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from charlstm.cli.common import option_of, out
from charlstm.interrupt import StopRequests
from charlstm.options import TuneSettings

T = TuneSettings()


def tune(
    config: Annotated[Path | None, option_of(TuneSettings, "config", "--config")] = T.config,
    overrides: Annotated[list[str] | None, option_of(TuneSettings, "overrides", "--set")] = None,
    time: Annotated[str, option_of(TuneSettings, "time", "--time")] = T.time,
    trial_time: Annotated[
        str, option_of(TuneSettings, "trial_time", "--trial-time")
    ] = T.trial_time,
    space: Annotated[Path | None, option_of(TuneSettings, "space", "--space")] = T.space,
    storage: Annotated[str | None, option_of(TuneSettings, "storage", "--storage")] = T.storage,
    study: Annotated[str | None, option_of(TuneSettings, "study", "--study")] = T.study,
    out_dir: Annotated[Path | None, option_of(TuneSettings, "out", "--out")] = T.out,
    trials: Annotated[int | None, option_of(TuneSettings, "trials", "--trials")] = T.trials,
    pruner: Annotated[str, option_of(TuneSettings, "pruner", "--pruner")] = T.pruner,
    seed: Annotated[int | None, option_of(TuneSettings, "seed", "--seed")] = T.seed,
    start: Annotated[str, option_of(TuneSettings, "start", "--start")] = T.start,
) -> None:
    """Search for a better config: an Optuna study whose trials are time-budget runs."""
    from charlstm.training.tune import optuna_module, run_study, trials_table

    optuna_module()  # missing: one line, before anything else
    settings = TuneSettings(
        config=config, overrides=overrides or (), time=time, trial_time=trial_time,
        space=space, storage=storage, study=study, out=out_dir, trials=trials,
        pruner=pruner, seed=seed, start=start,
    )  # fmt: skip
    with StopRequests():  # Ctrl-C: the trial in hand saves and stops, then the study
        found, best = run_study(settings, out)
    out.print(trials_table(found))
    if best.is_file():
        out.print(f"best config: {best}\ntrain it with: charlstm train --config {best}")
    else:
        out.print("no trial finished: nothing to write (a longer --time or --trial-time?)")
