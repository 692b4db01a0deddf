"""Making more of a list, beside Karpathy's makemore: the same list of short texts, the
same held-out documents, the same minutes on this CPU.

    .venv/bin/python -m bench.makemore --makemore /path/to/makemore.py [--minutes 4]
                                       [--words FILE] [--only charlstm,transformer,gru]
    .venv/bin/python -m bench.makemore --compare-state [--minutes 1.5]

makemore (one public file, PyTorch only) is run unmodified, as its README says, from a
folder outside the repository: `makemore.py -i words.txt -o DIR [--type gru]`, stopped
when the minutes are up (it keeps model.pt at its best held-out loss, checked every 500
steps). Its own split (torch.randperm under its seed 3407: a random 10%, at most 1,000
held out) is rebuilt by importing the same file, and both models are scored on exactly
those held-out words: loss per character with the end token counted (makemore's
measure), over every held-out word. charlstm trains on makemore's training words only
(holding out 1,000 of them for its own validation). Then 1,000 samples each at
temperature 1, and the share that are new (in neither split) and unique.

The list: /usr/share/dict/words (Debian's wamerican) lowercased words of 2-12 letters, a
seeded 32,000 of them: makemore's names list has 32,033 of the same kind of thing.

--compare-state trains charlstm's two document modes (fresh state per document,
carried across) on the same list and on tiny Shakespeare's paragraphs, each for the
same minutes, and scores held-out documents from the document start.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from bench.common import machine, shakespeare_path
from charlstm.api import load
from charlstm.config import Config
from charlstm.training.trainer import Trainer

DICT = Path("/usr/share/dict/words")
SAMPLES = 1000

CHARLSTM_WORDS = [
    "data.documents=lines",
    "data.val_fraction=0.04",
    "data.val_max_documents=1000",
    "model.embedding_dim=32",
    "model.hidden_size=256",
    "model.num_layers=2",
    "model.dropout=0.3",
    "train.batch_size=128",
    "train.bptt=16",
    "train.lr=3e-3",
    "train.warmup_steps=100",
    "train.max_steps=null",  # the minutes decide
    "train.eval_every=500",
    "train.checkpoint_every=500",
    "train.device=cpu",
    "log.log_every=100",
]


def word_list(path: Path, count: int = 32000, seed: int = 0) -> list[str]:
    words = sorted(
        {w.strip().lower() for w in path.read_text(encoding="utf-8").splitlines()} - {""}
    )
    words = [w for w in words if w.isascii() and w.isalpha() and 2 <= len(w) <= 12]
    return random.Random(seed).sample(words, min(count, len(words)))


def makemore_module(path: Path):
    spec = importlib.util.spec_from_file_location("makemore", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its training is under `if __name__ == "__main__"`
    return module


def makemore_split(mm, words_file: Path):
    """makemore's own split of the list, exactly as its run made it (its seed first)."""
    torch.manual_seed(3407)
    with io.StringIO() as quiet, contextlib.redirect_stdout(quiet):
        return mm.create_datasets(str(words_file))


def run_makemore(script: Path, words_file: Path, work: Path, kind: str, seconds: float):
    """makemore as its users run it, stopped when the time is up."""
    args = [sys.executable, str(script), "-i", str(words_file), "-o", str(work), "-n", "0"]
    if kind != "transformer":
        args += ["--type", kind]
    work.parent.mkdir(parents=True, exist_ok=True)
    with open(work.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=script.parent)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
    steps = [
        line
        for line in work.with_suffix(".log").read_text().splitlines()
        if line.startswith("step ") and "|" in line
    ]
    return int(steps[-1].split()[1]) if steps else 0


@torch.no_grad()
def score_makemore(mm, kind: str, work: Path, train_set, test_set):
    config = mm.ModelConfig(
        vocab_size=train_set.get_vocab_size(), block_size=train_set.get_output_length()
    )
    with io.StringIO() as quiet, contextlib.redirect_stdout(quiet):
        model = mm.Transformer(config) if kind == "transformer" else mm.RNN(config, kind)
    model.load_state_dict(torch.load(work / "model.pt"))
    model.eval()
    # every held-out word, weighted by its predictions (characters and the end)
    total, count = 0.0, 0
    for i in range(0, len(test_set), 100):
        xs, ys = zip(*(test_set[j] for j in range(i, min(i + 100, len(test_set)))), strict=True)
        x, y = torch.stack(xs), torch.stack(ys)
        logits, _ = model(x)
        nll = torch.nn.functional.cross_entropy(
            logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1, reduction="sum"
        )
        total += float(nll)
        count += int((y != -1).sum())
    start = torch.zeros(SAMPLES, 1, dtype=torch.long)
    steps = train_set.get_output_length() - 1
    rows = mm.generate(model, start, steps, do_sample=True)[:, 1:].tolist()
    samples = [train_set.decode(r[: r.index(0)] if 0 in r else r) for r in rows]
    return total / count, samples


def run_charlstm(words: list[str], root: Path, seconds: float, extra=()):
    root.mkdir(parents=True, exist_ok=True)
    corpus = root / "train-words.txt"
    corpus.write_text("\n".join(words) + "\n", encoding="utf-8")
    cfg = Config.from_dict(
        {},
        [f"data.path={corpus}", f"data.cache_dir={root / 'cache'}", f"train.out_dir={root / 'run'}",
         f"train.max_seconds={seconds}", *CHARLSTM_WORDS, *extra],
    )  # fmt: skip
    with open(root / "charlstm.log", "w") as log:
        summary = Trainer(cfg, console=Console(file=log, width=120), quiet=True).run()
    return summary.steps, load(root / "run", "cpu")


def novelty(samples: list[str], train: set[str], test: set[str]) -> tuple[float, float]:
    distinct = set(samples)
    new = [s for s in distinct if s not in train and s not in test]
    return len(new) / len(samples), len(distinct) / len(samples)


def compare_with_makemore(args) -> None:
    seconds = args.minutes * 60
    words = word_list(args.words)
    root = Path(tempfile.mkdtemp(prefix="charlstm-makemore-"))
    words_file = root / "words.txt"
    words_file.write_text("\n".join(words) + "\n", encoding="utf-8")
    mm = makemore_module(args.makemore)
    train_set, test_set = makemore_split(mm, words_file)
    train_words, test_words = set(train_set.words), set(test_set.words)
    print(f"machine: {machine()}")
    print(f"{len(words):,} words from {args.words}; makemore's split: {len(train_words):,} "
          f"train / {len(test_words):,} held out; {args.minutes:g} minutes each\n")  # fmt: skip
    rows = []
    for kind in args.only:
        started = time.perf_counter()
        if kind == "charlstm":
            steps, model = run_charlstm(train_set.words, root / "charlstm", seconds)
            scores = model.score_documents(test_set.words)
            loss = -sum(s.log_prob for s in scores) / sum(s.chars + 1 for s in scores)
            made = model.sample_documents(SAMPLES, temperature=1.0, seed=0, length=40)
            samples = [m.text for m in made]
            params = model.net.num_parameters()
            name = (
                "charlstm "
                + "x".join(
                    str(v) for v in (model.config.model.num_layers, model.config.model.hidden_size)
                )
                + f" {model.config.model.cell}"
            )
        else:
            work = root / kind
            steps = run_makemore(args.makemore, words_file, work, kind, seconds)
            loss, samples = score_makemore(mm, kind, work, train_set, test_set)
            params = None
            name = f"makemore {kind}"
        new, unique = novelty(samples, train_words, test_words)
        wall = time.perf_counter() - started
        rows.append((name, steps, loss, new, unique, params, wall))
        print(f"{name}: {steps} steps, held-out loss {loss:.4f}, new {new:.1%}, unique {unique:.1%} "
              f"({wall:.0f} s with scoring)", flush=True)  # fmt: skip
    print(
        "\n| model | steps | held-out loss (nats/char, end counted) | new and unique of 1,000 samples | distinct |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, steps, loss, new, unique, _, _ in rows:
        print(f"| {name} | {steps:,} | {loss:.4f} | {new:.1%} | {unique:.1%} |")


def compare_state(args) -> None:
    """fresh vs carried, on a list of short texts and on paragraphs of prose."""
    seconds = args.minutes * 60
    root = Path(tempfile.mkdtemp(prefix="charlstm-state-"))
    words = word_list(args.words)
    (root / "words.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    prose = [
        f"data.path={shakespeare_path()}", "data.documents=paragraphs",
        "data.val_max_documents=1000", "model.hidden_size=256", "model.num_layers=2",
        "model.embedding_dim=64", "train.batch_size=32", "train.bptt=64", "train.lr=3e-3",
        "train.warmup_steps=100", "train.max_steps=null", "train.eval_every=250", "train.checkpoint_every=250",
        "train.device=cpu", "log.log_every=100", "train.eval_chars=100000",
    ]  # fmt: skip
    corpora = {
        "words (32,000 lines)": [f"data.path={root / 'words.txt'}", *CHARLSTM_WORDS],
        "tiny Shakespeare paragraphs": prose,
    }
    print(f"machine: {machine()}; {args.minutes:g} minutes each\n")
    print("| corpus | document_state | steps | held-out loss from the document start |")
    print("|---|---|---:|---:|")
    for corpus, keys in corpora.items():
        for state in ("fresh", "carried"):
            out = root / f"{len(corpus)}-{state}"
            out.parent.mkdir(parents=True, exist_ok=True)
            cfg = Config.from_dict({}, [*keys, f"data.document_state={state}",
                                        f"train.max_seconds={seconds}", f"train.out_dir={out}",
                                        f"data.cache_dir={root / 'cache'}"])  # fmt: skip
            with open(out.with_suffix(".log"), "w") as log:
                summary = Trainer(cfg, console=Console(file=log, width=120), quiet=True).run()
            result, _ = load(out, "cpu").evaluate_documents()
            print(f"| {corpus} | {state} | {summary.steps:,} | {result.loss:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--makemore", type=Path, help="makemore.py, outside this repository")
    parser.add_argument("--words", type=Path, default=DICT)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--only", default="charlstm,transformer,gru")
    parser.add_argument("--compare-state", action="store_true")
    args = parser.parse_args()
    args.only = args.only.split(",")
    if not args.words.is_file():
        raise SystemExit(f"{args.words} not found (Debian: apt-get install wamerican)")
    if args.compare_state:
        compare_state(args)
        return
    if args.makemore is None or not args.makemore.is_file():
        raise SystemExit("give --makemore /path/to/makemore.py (github.com/karpathy/makemore)")
    compare_with_makemore(args)


if __name__ == "__main__":
    main()
