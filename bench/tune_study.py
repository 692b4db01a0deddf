"""`charlstm tune` against the hand-tuned recipe: a study from the default config on tiny
Shakespeare, then its best config and configs/shakespeare-cpu.yaml each retrained alone
for 180 s in the same run, scored alike (bench/autopilot.py's scoring).

    .venv/bin/python -m bench.tune_study [--time 30m] [--trial-time 3m] [--seed 0]

The study is what a user runs: `charlstm tune --set data.path=... --time 30m
--trial-time 3m`, no config, the default space and start (train.auto's choice for one
trial's budget, the space around it), the median pruner, a journal file under /tmp.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna
from rich.console import Console

from bench.autopilot import train_and_score
from bench.common import ROOT, machine, shakespeare_path
from charlstm.options import TuneSettings
from charlstm.training.tune import run_study


def trials_markdown(study) -> None:
    print("| trial | state | val loss | steps | drawn |")
    print("| ---: | --- | ---: | ---: | --- |")
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            value = f"{t.value:.4f}"
        elif t.intermediate_values:  # a pruned trial: its last report, in brackets
            value = f"({t.intermediate_values[max(t.intermediate_values)]:.4f})"
        else:
            value = ""
        drawn = ", ".join(
            f"{k.split('.')[-1]} {v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]} {v}"
            for k, v in t.params.items()
        )
        steps = t.user_attrs.get("steps", "")
        print(f"| {t.number} | {t.state.name.lower()} | {value} | {steps} | {drawn} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time", default="30m")
    parser.add_argument("--trial-time", default="3m")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"# tune study, {time.strftime('%Y-%m-%d')}, {machine()}\n", flush=True)
    data = [f"data.path={shakespeare_path()}", "data.val_fraction=0.1"]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = TuneSettings(
            overrides=tuple(data), time=args.time, trial_time=args.trial_time,
            out=tmp / "study", seed=args.seed,
        )  # fmt: skip
        started = time.perf_counter()
        study, best = run_study(settings, Console(width=200))
        print(f"\nthe study: {time.perf_counter() - started:.0f} s, {len(study.trials)} trials\n")
        trials_markdown(study)
        print("\n| config | steps | val loss (nats/char, scored alike) |")
        print("| --- | ---: | ---: |")
        recipe = ROOT / "configs/shakespeare-cpu.yaml"
        for name, label, config in (("best", "the study's best.yaml", best),
                                    ("recipe", "configs/shakespeare-cpu.yaml", recipe)):  # fmt: skip
            result = train_and_score(config, data, tmp / name)
            print(f"| {label} | {result.steps:,} | {result.loss:.4f} |", flush=True)


if __name__ == "__main__":
    main()
