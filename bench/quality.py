"""Quality per wall-clock time: validation loss on tiny Shakespeare after 180 seconds.

    .venv/bin/python bench/quality.py [--seconds 180] [--set key=value ...] [--no-reference]
                                      [--compare-decay N]

charlstm trains configs/shakespeare-cpu.yaml (its train.max_seconds is the budget); the
reference is the hand-written 2x256 LSTM loop of bench/common.py (batch 32, bptt 64,
AdamW 2e-3, clipping) for the same number of seconds. Both are then scored the same way:
one in-order pass over the whole validation split (the last 10%) with carried state.

--compare-decay N runs the recipe N times each way, alternating, with AdamW's weight
decay on every parameter (as charlstm did before) and on the weight matrices only (what
it does now), so both are measured on the same machine in the same hour.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from bench.common import ROOT, ReferenceLoop, machine, shakespeare_path
from charlstm.checkpoint import read_checkpoint, restore_model
from charlstm.config import load_config
from charlstm.data.corpus import load_corpus
from charlstm.evaluate import evaluate_ids
from charlstm.rundir import RunDir
from charlstm.training.trainer import Trainer


def charlstm_val_loss(seconds: float, overrides: list[str], out: Path) -> tuple[float, int]:
    cfg = load_config(
        ROOT / "configs/shakespeare-cpu.yaml",
        [
            f"data.path={shakespeare_path()}",
            f"train.max_seconds={seconds}",
            f"train.out_dir={out}",
            *overrides,
        ],
    )
    trainer = Trainer(cfg, console=Console(file=io.StringIO()), overwrite=True)
    trainer.run()
    model = restore_model(read_checkpoint(RunDir(out).last))
    # The whole split (training itself validates on train.eval_chars of it).
    val = np.asarray(load_corpus(cfg.data).split(cfg.data.val_fraction)[1])
    return evaluate_ids(model, val, streams=1, window=1024).loss, trainer.step


def decay_everything(model, weight_decay):
    """The parameter groups charlstm used before: one group, every parameter decayed."""
    return [{"params": list(model.parameters()), "weight_decay": weight_decay}]


def compare_decay(seconds: float, overrides: list[str], runs: int, tmp: Path) -> None:
    from charlstm.training import trainer as trainer_module

    matrices_only = trainer_module.decay_groups
    results: dict[str, list[tuple[float, int]]] = {"every parameter": [], "matrices only": []}
    for i in range(runs):
        for name, groups in (
            ("every parameter", decay_everything),
            ("matrices only", matrices_only),
        ):
            trainer_module.decay_groups = groups
            try:
                result = charlstm_val_loss(seconds, overrides, tmp / f"{i}-{len(name)}")
            finally:
                trainer_module.decay_groups = matrices_only
            results[name].append(result)
            print(
                f"| weight decay on {name}, run {i + 1} | {result[1]} | {result[0]:.4f} | {result[0] / np.log(2):.4f} |",
                flush=True,
            )
    for name, rows in results.items():
        mean = sum(loss for loss, _ in rows) / len(rows)
        print(
            f"| weight decay on {name}, mean of {len(rows)} | | **{mean:.4f}** | {mean / np.log(2):.4f} |"
        )


def reference_val_loss(seconds: float) -> tuple[float, int]:
    corpus = load_corpus(load_config(None, [f"data.path={shakespeare_path()}"]).data)
    train, val = corpus.split(0.1)
    loop = ReferenceLoop(np.asarray(train), corpus.vocab.size, 64, 256, 2, 32, 64, lr=2e-3)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        loop.train_step()
    return loop.val_loss(np.asarray(val)), loop.step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--compare-decay", type=int, default=0, metavar="N")
    args = parser.parse_args()
    print(f"# quality in {args.seconds:.0f} s, {time.strftime('%Y-%m-%d')}, {machine()}")
    if args.overrides:
        print("overrides: " + " ".join(args.overrides))
    print("\n| what | steps | val loss (nats/char) | val bpc |")
    print("| --- | --- | --- | --- |")
    if args.compare_decay:
        with tempfile.TemporaryDirectory() as tmp:
            compare_decay(args.seconds, args.overrides, args.compare_decay, Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        loss, steps = charlstm_val_loss(args.seconds, args.overrides, Path(tmp) / "run")
        print(
            f"| charlstm configs/shakespeare-cpu.yaml | {steps} | {loss:.4f} | {loss / np.log(2):.4f} |",
            flush=True,
        )
    if not args.no_reference:
        loss, steps = reference_val_loss(args.seconds)
        print(f"| hand-written 2x256 LSTM loop | {steps} | {loss:.4f} | {loss / np.log(2):.4f} |")
    print("| nanoGPT CPU recipe (published, not run here) | | ~1.88 | |")


if __name__ == "__main__":
    main()
