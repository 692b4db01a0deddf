"""Training on autopilot: what `train.auto` chooses, beside the default and the hand-tuned
recipes, at equal seconds on this machine.

    .venv/bin/python -m bench.autopilot [--seconds S] [--only NAME ...] [--big-mb 200]
    .venv/bin/python -m bench.autopilot --grid [--only NAME ...]

The comparison (default mode) trains, on each corpus, for the same seconds (SECONDS:
the hand-tuned recipes' own budgets where they exist): the default
config (configs' defaults, `train.max_seconds` set), `train.auto`, and the hand-tuned
recipe where one exists (configs/shakespeare-cpu.yaml, configs/names.yaml). Every run is
scored the same way: best.pt on the first VAL_CHARS characters of the validation split
(in order, state carried), or on its held-out documents.

Corpora: tiny Shakespeare (1.1 MB), a names list as documents (wamerican's words),
a code folder (this interpreter's standard library), a tiny text (its first 50 KB of
Shakespeare) and a generated corpus of `--big-mb` MB (code and prose mixed, made under
/tmp, never in the repository).

--grid trains some of the shapes auto chooses among on Shakespeare and the tiny text,
each with the Shakespeare recipe otherwise: the runs the sizing rule in
charlstm/training/auto.py was fitted on (GRID below).
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from bench.common import ROOT, machine, shakespeare_path
from charlstm.checkpoint import read_checkpoint, restore_model
from charlstm.config import load_config
from charlstm.data.corpus import load_corpus
from charlstm.data.split import split_documents
from charlstm.evaluate import evaluate_ids, score_split
from charlstm.rundir import RunDir
from charlstm.training.trainer import Trainer

TEXT_RECIPE = ROOT / "configs/shakespeare-cpu.yaml"
VAL_CHARS = 200_000  # scored of each validation split: all of the small ones
# Seconds per corpus: the hand-tuned recipes' own budgets where they exist.
SECONDS = {"shakespeare": 180.0, "names": 240.0, "code": 120.0, "tiny": 60.0, "big": 120.0}


@dataclass(frozen=True)
class Corpus:
    name: str
    overrides: list[str]  # data.* keys
    recipe: Path | None  # the hand-tuned config, if one exists


def tiny_text(tmp: Path) -> Path:
    path = tmp / "tiny.txt"
    path.write_text(shakespeare_path().read_text(encoding="utf-8")[:50_000], encoding="utf-8")
    return path


def names_list(tmp: Path) -> Path:
    words = Path("/usr/share/dict/words")
    if not words.is_file():
        raise SystemExit("the names corpus needs /usr/share/dict/words (apt-get install wamerican)")
    picked = [w for w in words.read_text(encoding="utf-8").split("\n") if w.isalpha()]
    rng = np.random.default_rng(0)
    chosen = rng.choice(picked, size=min(32_000, len(picked)), replace=False)
    path = tmp / "names.txt"
    path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
    return path


def big_corpus(tmp: Path, megabytes: int) -> Path:
    """Code and prose mixed, generated: the standard library's sources and Shakespeare,
    cut into pieces and shuffled, repeated up to the size asked."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    pieces = [p.read_text(encoding="utf-8", errors="replace") for p in sorted(stdlib.glob("*.py"))]
    prose = shakespeare_path().read_text(encoding="utf-8")
    pieces += [prose[i : i + 20_000] for i in range(0, len(prose), 20_000)]
    rng = np.random.default_rng(0)
    path = tmp / "big.txt"
    with open(path, "w", encoding="utf-8") as out:
        written = 0
        while written < megabytes * 1_000_000:
            for i in rng.permutation(len(pieces)):
                out.write(pieces[i])
                written += len(pieces[i])
    return path


def corpora(tmp: Path, big_mb: int) -> dict[str, Callable[[], Corpus]]:
    shakespeare = str(shakespeare_path())
    return {
        "shakespeare": lambda: Corpus(
            "tiny Shakespeare (1.1 MB)",
            [f"data.path={shakespeare}", "data.val_fraction=0.1"],
            ROOT / "configs/shakespeare-cpu.yaml",
        ),
        "names": lambda: Corpus(
            "32,000 words as documents",
            [
                f"data.path={names_list(tmp)}",
                "data.documents=lines",
                "data.val_fraction=0.04",
                "data.val_max_documents=1000",
            ],
            ROOT / "configs/names.yaml",
        ),  # fmt: skip
        "code": lambda: Corpus(
            "Python standard library (code folder)", ["data.path=python-stdlib"], None
        ),
        "tiny": lambda: Corpus(
            "50 KB of prose", [f"data.path={tiny_text(tmp)}", "data.val_fraction=0.1"], None
        ),
        "big": lambda: Corpus(
            f"{big_mb} MB of code and prose", [f"data.path={big_corpus(tmp, big_mb)}"], None
        ),
    }


@dataclass
class Outcome:
    steps: int
    loss: float  # nats/char on the common scoring
    seconds: float
    stopped_early: bool
    diagnosis: str
    chosen: str


def train_and_score(config: Path | None, overrides: list[str], out: Path) -> Outcome:
    cfg = load_config(config, [*overrides, f"train.out_dir={out}"])
    log = io.StringIO()
    trainer = Trainer(cfg, console=Console(file=log, width=200), quiet=True, overwrite=True)
    started = time.perf_counter()
    summary = trainer.run()
    seconds = time.perf_counter() - started
    saved = read_checkpoint(RunDir(out).best if RunDir(out).best.is_file() else RunDir(out).last)
    model = restore_model(saved)
    corpus = load_corpus(saved.config.data)
    if saved.vocab.documents:
        split = split_documents(corpus.ids, saved.vocab, saved.config.data)
        loss = score_split(model, saved.vocab, split, split.val)[0].loss
    else:
        val = np.asarray(corpus.split(saved.config.data.val_fraction)[1][: VAL_CHARS + 1])
        loss = evaluate_ids(model, val, streams=16).loss
    return Outcome(
        summary.steps,
        loss,
        seconds,
        summary.stopped_early,
        summary.diagnosis,
        trainer.auto_note or "",
    )


def shape_of(out: Path) -> str:
    m = read_checkpoint(RunDir(out).last).config.model
    t = read_checkpoint(RunDir(out).last).config.train
    return (
        f"{m.num_layers}x{m.hidden_size} {m.cell}, batch {t.batch_size}, bptt {t.bptt}, "
        f"dropout {m.dropout:g}, lr {t.lr:g}, wd {t.weight_decay:g}"
    )


def compare(args, tmp: Path) -> None:
    print("| corpus | seconds | config | model | steps | val loss (nats/char) | vs default | "
          "early stop | diagnosis |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    made = corpora(tmp, args.big_mb)
    for key in args.only or list(made):
        corpus = made[key]()
        seconds = args.seconds or SECONDS[key]
        budget = [f"train.max_seconds={seconds}"]
        runs = [
            ("default", None, [*corpus.overrides, *budget, "train.max_steps=null"]),
            ("auto", None, [*corpus.overrides, *budget, "train.auto=true"]),
        ]
        recipe = corpus.recipe or (TEXT_RECIPE if args.text_recipe else None)
        if recipe is not None:
            runs.append((recipe.name, recipe, [*corpus.overrides, *budget]))
        if args.configs:
            runs = [run for run in runs if run[0] in args.configs]
        default_loss = math.nan
        said = []
        for label, config, overrides in runs:
            out = tmp / f"{key}-{label}"
            result = train_and_score(config, [*overrides, *args.extra], out)
            if label == "default":
                default_loss = result.loss
            print(
                f"| {corpus.name} | {seconds:.0f} | {label} | {shape_of(out)} | {result.steps:,} "
                f"| {result.loss:.4f} | {result.loss - default_loss:+.4f} | "
                f"{'yes' if result.stopped_early else 'no'} | {result.diagnosis} |",
                flush=True,
            )
            said += [f"{corpus.name}, {seconds:.0f} s: {result.chosen}"] if result.chosen else []
        print("".join(f"\n    {line}" for line in said), flush=True)


# (corpus, seconds, layers x width, dropout): the runs the sizing rule was fitted on.
# The tiny text validates every 25 steps (best.pt is its best point, as under
# train.patience); Shakespeare once, at the end, as its recipe does.
GRID = [
    *[("shakespeare", 60, shape, 0.0) for shape in ("1x128", "2x128", "2x256")],
    *[("shakespeare", 180, shape, 0.0) for shape in ("2x128", "2x256", "2x384")],
    *[("tiny", 60, shape, 0.3) for shape in ("1x128", "2x128", "2x256")],
    ("tiny", 60, "2x256", 0.0),
]
EVERY = {"shakespeare": "train.eval_every=100000", "tiny": "train.eval_every=25"}


def grid(args, tmp: Path) -> None:
    """The shapes auto chooses among, each with the Shakespeare recipe otherwise."""
    print("| corpus | seconds | shape | dropout | steps | chars seen / parameter | val loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    made = corpora(tmp, args.big_mb)
    recipe = ROOT / "configs/shakespeare-cpu.yaml"
    for key, seconds, shape, dropout in GRID:
        if args.only and key not in args.only or args.shapes and shape not in args.shapes:
            continue
        corpus = made[key]()
        layers, hidden = shape.split("x")
        out = tmp / f"grid-{key}-{seconds}-{shape}-{dropout}"
        overrides = [
            *corpus.overrides,
            f"train.max_seconds={seconds}",
            f"model.num_layers={layers}",
            f"model.hidden_size={hidden}",
            f"model.dropout={dropout}",
            EVERY[key],
        ]
        result = train_and_score(recipe, overrides, out)
        saved = read_checkpoint(RunDir(out).last)
        params = sum(t.numel() for t in saved.model.values())
        seen = result.steps * saved.config.train.batch_size * saved.config.train.bptt
        print(
            f"| {corpus.name} | {seconds:g} | {shape} | {dropout:g} | {result.steps:,} | "
            f"{seen / params:.1f} | {result.loss:.4f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="for every corpus (default: SECONDS)")
    parser.add_argument("--only", action="append", choices=["shakespeare", "names", "code",
                        "tiny", "big"])  # fmt: skip
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--configs", action="append", help="only these: default, auto, ...")
    parser.add_argument("--set", action="append", default=[], dest="extra",
                        help="an override for every run (to try a change)")  # fmt: skip
    parser.add_argument("--text-recipe", action="store_true",
                        help="the Shakespeare recipe on corpora without one of their own")  # fmt: skip
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--shapes", action="append", help="--grid: only these (2x256 ...)")
    args = parser.parse_args()
    print(f"# autopilot, {time.strftime('%Y-%m-%d')}, {machine()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        (grid if args.grid else compare)(args, Path(tmp))


if __name__ == "__main__":
    main()
