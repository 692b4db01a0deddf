"""`charlstm tune`: an Optuna study whose trials are time-budget training runs.

Each trial is the base config with the space's keys drawn by Optuna's sampler (TPE),
trained for `--trial-time` with the schedule fitted to it (budget.py), and validated
REPORTS times on the way: each validation is reported to the study and a trial the
pruner (median, or Hyperband) finds behind the others at the same point stops there.
A trial's value is its best validation loss.

Many processes, on one machine or many, share a study through its storage: a journal
file in the study folder by default (safe for processes on one machine), or any database
URL Optuna takes (`postgresql://...`) for many machines; each runs the same
`charlstm tune --storage URL --study NAME`. Whichever finishes writes best.yaml, the
best trial's config, from the study itself, so the file always names the study's best.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import TextColumn
from rich.table import Table

from charlstm.config import Config, key_type, load_config
from charlstm.data.corpus import load_corpus
from charlstm.device import pick_device
from charlstm.errors import CharlstmError, ConfigError
from charlstm.interrupt import Interrupted, check
from charlstm.options import TuneSettings, seed32
from charlstm.progress import bar, format_duration
from charlstm.training.auto import Facts, choose, facts_of, left_to_choose, seconds_per_step

REPORTS = 4  # validations per trial: the points the pruner compares trials at
JOURNAL = "journal.log"
BEST = "best.yaml"

# What a study draws when no --space is given: the levers that mattered in the searches
# of bench/RESULTS.md (cell, width, depth, rate, weight decay, dropout, batch, optimizer),
# each around the study's start (space_around): a wide space drawn at random rarely lands
# near a tuned point in the ten or so trials half an hour holds (RESULTS 10c).
WIDTHS = (0.75, 1.0, 1.25, 1.5)  # of the start's width
RATES = 3.0  # the rate drawn within start / RATES .. start * RATES
# Keys a trial may not draw: what fixes the corpus, where runs go, the budget itself.
NOT_TUNABLE = ("data.", "train.out_dir", "train.max_seconds", "train.device", "train.auto",
               "train.init_from", "train.threads")  # fmt: skip


def optuna_module():
    try:
        import optuna
    except ImportError:
        raise ConfigError("charlstm tune needs Optuna: pip install 'charlstm[tune]'") from None
    # A trial that fails shows in the table; a stopped study says so in one line.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


# -- the space ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    key: str
    choices: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def draw(self, trial) -> Any:
        if self.choices is not None:
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)


def space_around(start: Config) -> dict[str, Any]:
    """The default space: the start's cell and the other two gated cells, its depth and
    one layer either side, widths from 3/4 to 3/2 of its own, batches half and twice its
    own, its rate within a factor of RATES, weight decay and dropout over the ranges the
    recipes used, and both optimizers."""
    m, t = start.model, start.train
    return {
        "model.cell": sorted({"gru", "lstm", m.cell}),
        "model.num_layers": sorted({max(1, m.num_layers - 1), m.num_layers, m.num_layers + 1}),
        "model.hidden_size": sorted({max(32, round(m.hidden_size * f / 32) * 32) for f in WIDTHS}),
        "model.dropout": {"low": 0.0, "high": 0.3},
        "train.lr": {"low": t.lr / RATES, "high": t.lr * RATES, "log": True},
        "train.weight_decay": {"low": 1e-3, "high": 1.0, "log": True},
        "train.batch_size": sorted({max(8, t.batch_size // 2), t.batch_size, t.batch_size * 2}),
        "train.optimizer": ["adamw", "muon"],
    }


def read_space(path: Path | None, start: Config | None = None) -> list[Dimension]:
    """The space of a YAML file (`key: [choices]` or `key: {low, high, log}`), or the
    default around `start` (the default config's, without one); every mistake is one line
    naming the key."""
    raw: Any = space_around(start or Config())
    where = "the default space"
    if path is not None:
        where = f"space {path}"
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"{where}: cannot read it ({err.strerror or err})") from None
        except (yaml.YAMLError, UnicodeDecodeError):
            raise ConfigError(f"{where}: not valid YAML") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: must map config keys to choices or ranges")
    return [_dimension(str(key), value, where) for key, value in raw.items()]


def _dimension(key: str, value: Any, where: str) -> Dimension:
    try:
        kind = key_type(key)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if key.startswith(NOT_TUNABLE) or key in NOT_TUNABLE:
        raise ConfigError(f"{where}: {key} is not a key a trial may draw")
    if isinstance(value, list):
        ok = value and all(isinstance(v, (str, int, float, bool)) for v in value)
        if not ok:
            raise ConfigError(f"{where}: {key} needs a non-empty list of plain values")
        return Dimension(key, choices=tuple(value))
    if (
        isinstance(value, dict)
        and set(value) <= {"low", "high", "log"}
        and {"low", "high"} <= set(value)
    ):
        low, high, log = value["low"], value["high"], bool(value.get("log", False))
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
        if kind not in (int, float) or not numbers or not low < high or (log and low <= 0):
            raise ConfigError(
                f"{where}: {key} needs numbers low < high (low > 0 with log) on a numeric key"
            )
        return Dimension(key, low=float(low), high=float(high), log=log, integer=kind is int)
    raise ConfigError(f"{where}: {key} must be a list of choices or {{low, high, log}}")


# -- the study ----------------------------------------------------------------------------
@dataclass
class Study:
    """One process's part in a study."""

    settings: TuneSettings
    base: Config  # the base config with what the study starts from
    start: list[str]  # overrides: the autopilot's choice for the keys the base leaves open
    space: list[Dimension]
    folder: Path
    facts: Facts
    console: Console

    def overrides_of(self, trial) -> list[str]:
        drawn = [f"{d.key}={_yaml_value(d.draw(trial))}" for d in self.space]
        out = self.folder / f"trial-{trial.number:04d}"
        budget = f"train.max_seconds={self.settings.trial_seconds}"
        return [*self.start, *self.settings.overrides, *drawn, budget, "train.max_steps=null",
                f"train.out_dir={out}"]  # fmt: skip

    def objective(self, trial) -> float:
        check("tune")  # a stop asked for between two trials
        cfg = load_config(self.settings.config, self.overrides_of(trial))
        log = (self.folder / f"trial-{trial.number:04d}.log").open("w", encoding="utf-8")
        with log:
            try:
                return self._run_trial(trial, cfg, log)
            except Interrupted:
                raise  # the study stops (best.yaml is written on the way out)
            except (CharlstmError, MemoryError, RuntimeError) as err:  # out of memory, a
                # shape that cannot be built: this trial failed, the study goes on
                reason = " ".join(str(err).split())[:300] or type(err).__name__
                print(f"trial {trial.number} failed: {reason}", file=log)
                self.console.print(f"trial {trial.number} failed: {reason}", markup=False)
                raise TrialFailed(reason) from None

    def _run_trial(self, trial, cfg: Config, log) -> float:
        import optuna

        from charlstm.training.trainer import Trainer

        steps = self.settings.trial_seconds / seconds_per_step(
            self.facts, cfg.model, cfg.train.batch_size, cfg.train.bptt
        )
        every = max(5, int(steps // REPORTS))
        cfg = replace(cfg, train=replace(cfg.train, eval_every=every, checkpoint_every=every))
        trial.set_user_attr("config", cfg.to_dict())
        trainer = Trainer(cfg, console=Console(file=log, width=160), quiet=True, overwrite=True)
        trainer.on_validation = _reporter(trial)
        summary = trainer.run()
        trial.set_user_attr("steps", summary.steps)
        if trainer.stop_reason is not None and trainer.stop_reason.startswith("pruned"):
            raise optuna.TrialPruned()
        return summary.best_val_loss


class TrialFailed(Exception):
    """A trial that could not run (optuna marks it failed and the study goes on)."""


def base_params(base: Config, space: list[Dimension]) -> dict[str, Any]:
    """The base config's value of each key of the space that the space can draw."""
    flat = base.flat()
    params = {}
    for d in space:
        value = flat[d.key]
        fits = value in d.choices if d.choices is not None else (
            isinstance(value, (int, float)) and d.low <= value <= d.high)  # fmt: skip
        if fits:
            params[d.key] = value
    return params


def _reporter(trial) -> Callable[[int, float, int], str | None]:
    reports = 0  # its own count: a validation cut at the deadline is not in the history

    def report(step: int, loss: float, validations: int) -> str | None:
        nonlocal reports
        reports += 1
        trial.report(loss if math.isfinite(loss) else 1e9, reports)
        if trial.should_prune():
            return f"pruned by the study at validation {reports} (step {step})"
        return None

    return report


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def open_study(settings: TuneSettings, folder: Path):
    optuna = optuna_module()
    if settings.storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage: Any = JournalStorage(JournalFileBackend(str(folder / JOURNAL)))
    else:
        storage = settings.storage
    pruner = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=REPORTS),
        "none": lambda: optuna.pruners.NopPruner(),
    }[settings.pruner]()
    seed = seed32(settings.seed) if settings.seed is not None else None
    for attempt in range(3):
        try:
            return optuna.create_study(
                storage=storage,
                study_name=settings.study or folder.name,
                direction="minimize",
                sampler=optuna.samplers.TPESampler(seed=seed),
                pruner=pruner,
                load_if_exists=True,
            )
        except Exception as err:  # a URL Optuna cannot use: driver missing, refused, bad name
            # Two workers creating one study at once: the second loses the race in the
            # database (a unique name) and then finds it there.
            if "unique" in str(err).lower() and attempt < 2:
                time.sleep(0.5)
                continue
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"--storage: cannot open the study there: {first}") from None
    raise AssertionError("unreachable")  # a charlstm bug


def prepare(settings: TuneSettings, console: Console) -> Study:
    """Everything checked before the first trial: the base config, the space, the
    corpus (read once: every trial trains on it) and the device; then where the study
    starts."""
    base = load_config(settings.config, settings.overrides)
    if settings.space is not None:
        read_space(settings.space)  # a mistake in it: one line before anything is timed
    folder = settings.out or Path("runs") / f"tune-{settings.study or _name(settings.config)}"
    corpus = load_corpus(base.data, console, quiet=True)  # a missing corpus leaves no folder
    device = pick_device(base.train.device, "train.device")
    facts = facts_of(corpus.ids, corpus.vocab, base, device)  # what timing a step needs
    start = _start(settings, base, facts, console)
    base = load_config(settings.config, [*start, *settings.overrides])
    folder.mkdir(parents=True, exist_ok=True)
    return Study(settings, base, start, read_space(settings.space, base), folder, facts, console)


def _start(settings: TuneSettings, base: Config, facts: Facts, console: Console) -> list[str]:
    """`--start auto`: what train.auto chooses for one trial's budget, for every key the
    base config and --set leave open (the first trial trains it, the default space lies
    around it); `--start base`: the base as it is."""
    if settings.start == "base" or base.train.init_from or not left_to_choose(base):
        return []
    choice = choose(replace(facts, seconds=settings.trial_seconds))
    console.print(f"tune: trials start from train.auto's choice: {choice.reason}", markup=False)
    return [f"{key}={_yaml_value(value)}" for key, value in choice.settings.items()
            if key not in base.explicit]  # fmt: skip


def agreed_start(study, prepared: Study) -> Study:
    """One start, and so one space, for every process of a study: the first records its
    start in the study, the others take it from there (each timing its own machine
    could give another shape, and a key drawn from two spaces is an error to Optuna)."""
    recorded = study.user_attrs.get("start")
    if recorded is None:
        study.set_user_attr("start", prepared.start)
        return prepared
    if recorded == prepared.start:
        return prepared
    settings = prepared.settings
    base = load_config(settings.config, [*recorded, *settings.overrides])
    prepared.console.print("tune: trials start where the study's first process started")
    return replace(prepared, start=list(recorded), base=base,
                   space=read_space(settings.space, base))  # fmt: skip


def _name(config: Path | None) -> str:
    return config.stem if config is not None else "default"


def run_study(settings: TuneSettings, console: Console, study=None) -> tuple[Any, Path]:
    """Trials until --time (no trial starts that could not finish in it) or --trials;
    then the table and best.yaml. `study` may be one opened already (tests)."""
    optuna = optuna_module()
    prepared = prepare(settings, console)
    study = study or open_study(settings, prepared.folder)
    prepared = agreed_start(study, prepared)
    if not study.trials:  # the base itself first: a study starts from what it was given
        study.enqueue_trial(base_params(prepared.base, prepared.space), skip_if_exists=True)
    started = time.monotonic()
    with _TuneProgress(console, settings.seconds, started) as shown:

        def after_trial(study, trial) -> None:
            shown.update(study)
            if trial.state == optuna.trial.TrialState.COMPLETE:  # best.yaml as soon as a
                write_best(study, prepared)  # trial is better, not only at the end

        try:
            study.optimize(
                prepared.objective,
                n_trials=settings.trials,
                timeout=max(1.0, settings.seconds - settings.trial_seconds),
                callbacks=[after_trial],
                catch=(ConfigError, TrialFailed),
            )
        finally:  # Ctrl-C, SIGTERM: the best finished so far is still written
            path = write_best(study, prepared)
    return study, path


def write_best(study, prepared: Study) -> Path:
    import optuna

    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    path = prepared.folder / BEST
    if not finished:
        return path
    best = min(finished, key=lambda t: t.value)
    cfg = Config.from_dict(best.user_attrs["config"])
    out = Path("runs") / f"{prepared.folder.name}-best"
    cfg = replace(cfg, train=replace(cfg.train, out_dir=str(out)))
    header = (
        f"# charlstm train --config {path}\n#\n# The best of {len(finished)} finished trials "
        f"of study {study.study_name!r}: trial {best.number}, validation loss "
        f"{best.value:.4f} in {cfg.train.max_seconds:g} s.\n"
    )
    text = header + yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # whole, whichever process writes it last
    return path


def trials_table(study) -> Table:
    import optuna

    table = Table(title=f"study {study.study_name}")
    for column in ("trial", "state", "val loss", "steps", "params"):
        table.add_column(column)
    for t in sorted(study.trials, key=lambda t: (t.value is None, t.value or 0.0)):
        state = t.state.name.lower()
        value = f"{t.value:.4f}" if t.state == optuna.trial.TrialState.COMPLETE else (
            f"({t.intermediate_values[max(t.intermediate_values)]:.4f})"
            if t.intermediate_values else "")  # fmt: skip
        params = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in t.params.items())
        table.add_row(str(t.number), state, value, str(t.user_attrs.get("steps", "")), params)
    return table


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


class _TuneProgress:
    """One bar over the study's time: trials done, pruned and the best so far."""

    def __init__(self, console: Console, seconds: float, started: float):
        self.console, self.seconds, self.started = console, seconds, started
        self.fancy = console.is_terminal
        self._bar = None

    def __enter__(self) -> _TuneProgress:
        if self.fancy:
            self._bar = bar(self.console, TextColumn("[bold]tune"), transient=False)
            self._task = self._bar.add_task("tune", total=self.seconds, stats="", left="?")
            self._bar.start()
        return self

    def update(self, study) -> None:
        import optuna

        states = [t.state for t in study.trials]
        pruned = states.count(optuna.trial.TrialState.PRUNED)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = min(complete, key=lambda t: t.value) if complete else None
        stats = f"{len(states)} trials ({pruned} pruned)" + (
            f", best {best.value:.4f} (trial {best.number})" if best else ""
        )
        elapsed = time.monotonic() - self.started
        left = format_duration(max(0.0, self.seconds - elapsed))
        if self._bar is not None:
            self._bar.update(
                self._task, completed=min(elapsed, self.seconds), stats=stats, left=left
            )
        else:
            self.console.print(f"tune: {stats}, {format_duration(elapsed)} in, left {left}")

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
