"""Muon beside AdamW: LSTM and GRU on three corpora, at equal seconds and at equal steps.

    .venv/bin/python -m bench.optimizers [--seconds 90] [--only shakespeare ...]
                                         [--cells lstm,gru]

For each corpus (tiny Shakespeare, the standard library's code, 32,000 words as
documents) and cell, the autopilot's choice for SECONDS (`train.auto`, the cell fixed)
trains once with `train.optimizer=adamw` and once with `muon`, each for SECONDS: the
equal-seconds pair. Then Muon again with the AdamW run's exact config, its step count
as `train.max_steps` and no time limit (the cosine fitted to those steps): beside the
AdamW run, the equal-steps pair. Every run is scored as bench/autopilot.py scores
(best.pt on the same validation characters or documents). The seconds per step are
the training loop's own (its summary: steps over training seconds, validations out).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.autopilot import corpora, train_and_score
from bench.common import machine
from charlstm.checkpoint import read_checkpoint
from charlstm.rundir import RunDir

CORPORA = ("shakespeare", "code", "names")


def shape(out: Path) -> str:
    cfg = read_checkpoint(RunDir(out).last).config
    m, t = cfg.model, cfg.train
    return f"{m.num_layers}x{m.hidden_size}, batch {t.batch_size}, bptt {t.bptt}, lr {t.lr:.2g}"


def row(corpus: str, cell: str, budget: str, optimizer: str, result, out: Path) -> None:
    per_step = result.seconds / max(1, result.steps)
    print(
        f"| {corpus} | {cell.upper()} | {budget} | {optimizer} | {shape(out)} | "
        f"{result.steps:,} | {per_step * 1000:.1f} | {result.loss:.4f} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--only", action="append", choices=CORPORA)
    parser.add_argument("--cells", default="lstm,gru")
    args = parser.parse_args()
    print(f"# optimizers, {time.strftime('%Y-%m-%d')}, {machine()}\n")
    print("| corpus | cell | budget | optimizer | shape (auto) | steps | ms/step | val loss |")
    print("| --- | --- | --- | --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        made = corpora(tmp, 0)
        for key in args.only or CORPORA:
            corpus = made[key]()
            for cell in args.cells.split(","):
                budget = [f"train.max_seconds={args.seconds}", "train.auto=true",
                          f"model.cell={cell}"]  # fmt: skip
                runs = {}
                for optimizer in ("adamw", "muon"):
                    out = tmp / f"{key}-{cell}-{optimizer}"
                    overrides = [*corpus.overrides, *budget, f"train.optimizer={optimizer}"]
                    runs[optimizer] = train_and_score(None, overrides, out)
                    row(corpus.name, cell, f"{args.seconds:g} s", optimizer, runs[optimizer], out)
                # equal steps: the AdamW run's config as it ran, Muon, its step count
                adamw_out = tmp / f"{key}-{cell}-adamw"
                steps = runs["adamw"].steps
                out = tmp / f"{key}-{cell}-muon-steps"
                fixed = [
                    "train.auto=false",
                    "train.optimizer=muon",
                    "train.max_seconds=null",
                    f"train.max_steps={steps}",
                    f"train.decay_steps={steps}",
                    "train.patience=null",
                ]
                result = train_and_score(RunDir(adamw_out).config_file, fixed, out)
                row(corpus.name, cell, f"{steps:,} steps", "muon", result, out)


if __name__ == "__main__":
    main()
