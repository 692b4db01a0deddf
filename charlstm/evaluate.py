"""Loss, bits per character and perplexity of a model over a whole text, in order.

The text is scored once, every character exactly once, with the hidden state carried
from window to window. To use the hardware, the text can be walked as S contiguous
streams side by side; each stream after the first starts `BURN_IN` characters early and
does not score them, so it enters its own stretch with a warm state, as a single pass
would. `streams=1` is the exact single pass. The window length only bounds memory: the
result does not depend on it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from charlstm.config import Config
from charlstm.data.corpus import changed_corpus, load_corpus
from charlstm.errors import CharlstmError, CorpusError
from charlstm.memory import check_scoring_fits
from charlstm.model import CharRNN
from charlstm.options import SampleSettings, ScoreSettings, TaskExamples, default_of
from charlstm.progress import Work
from charlstm.data.vocab import Vocab

STREAMS = default_of(ScoreSettings, "streams")
WINDOW = default_of(ScoreSettings, "window")

# Characters of context each stream reads before its first scored character. An LSTM's
# state forgets most of what lies further back than this.
BURN_IN = 256


@dataclass(frozen=True)
class EvalResult:
    loss: float  # mean negative log-likelihood, nats per character
    chars: int  # characters scored
    seconds: float
    unknown: int = 0  # characters left out because the vocabulary lacks them

    @property
    def bpc(self) -> float:
        return self.loss / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    @property
    def chars_per_sec(self) -> float:
        return self.chars / max(self.seconds, 1e-9)


@torch.no_grad()
def evaluate_ids(
    model: CharRNN,
    ids: np.ndarray,
    streams: int = STREAMS,
    window: int = WINDOW,
    burn_in: int = BURN_IN,
    show_progress: bool = False,
    console: Console | None = None,
) -> EvalResult:
    """Score ids[1:] given everything before each character.

    `ids` may be a memory map: each window reads only its own columns from it. Stops
    between windows when asked (Ctrl-C, SIGTERM); with `show_progress`, long inputs get
    a progress bar with the time left."""
    n = len(ids) - 1
    if n < 1:
        raise CorpusError("text to evaluate needs at least two characters")
    device = next(model.parameters()).device
    started = time.perf_counter()
    was_training = model.training
    model.eval()

    seg = math.ceil(n / streams)
    starts = np.arange(0, n, seg)  # first scored target of each stream
    ends = np.minimum(starts + seg, n)
    burns = np.minimum(burn_in, starts)
    width = int((burns + ends - starts).max())
    check_scoring_fits(model.vocab_size, model.cfg, len(starts), min(window, width), device)
    # Row r reads ids[firsts[r] : lasts[r]] and scores columns [lo[r], hi[r]).
    firsts, lasts = starts - burns, ends + 1
    lo_np, hi_np = burns, burns + ends - starts
    lo = torch.as_tensor(lo_np, device=device)[:, None]
    hi = torch.as_tensor(hi_np, device=device)[:, None]

    total = torch.zeros((), dtype=torch.float64, device=device)
    state = None
    with Work("evaluating", n, "chars", console, visible=show_progress) as work:
        for c0 in range(0, width, window):
            chunk = np.zeros((len(starts), min(window, width - c0) + 1), dtype=np.int64)
            for r, (a, b) in enumerate(zip(firsts + c0, lasts, strict=True)):
                part = ids[a : min(b, a + chunk.shape[1])]
                chunk[r, : len(part)] = part
            inputs = torch.from_numpy(chunk).to(device)
            logits, state = model(inputs[:, :-1], state)
            nll = F.cross_entropy(logits.float().transpose(1, 2), inputs[:, 1:], reduction="none")
            cols = torch.arange(c0, c0 + nll.shape[1], device=device)[None, :]
            scored = (cols >= lo) & (cols < hi)
            total += (nll.double() * scored).sum()
            c1 = c0 + nll.shape[1]
            work.advance(int(np.clip(np.minimum(hi_np, c1) - np.maximum(lo_np, c0), 0, None).sum()))
    model.train(was_training)
    return EvalResult(total.item() / n, n, time.perf_counter() - started)  # waits for the device


def evaluate_text(model: CharRNN, vocab: Vocab, text: str, **kwargs) -> EvalResult:
    """Score a text; characters outside the vocabulary are counted, then left out."""
    symbols = vocab.code_point_array(text)
    known = vocab.known_mask(symbols)
    result = evaluate_ids(model, vocab.ids_of(symbols[known]), **kwargs)
    return EvalResult(result.loss, result.chars, result.seconds, unknown=int((~known).sum()))


def check_eval_options(text: Path | None, split: str | None, streams: int, window: int) -> None:
    """`charlstm eval`'s options, checked before any work starts."""
    if (text is None) == (split is None):
        raise CharlstmError("give exactly one of --text FILE or --split val")
    if split is not None and split != "val":
        raise CharlstmError(f"--split must be 'val' (got {split!r})")
    if text is not None and not text.is_file():
        raise CorpusError(f"--text {text}: no such file")
    check_scoring(streams, window)


def check_scoring(streams: int, window: int) -> None:
    """How a text is walked (any text: a file, a split, a string from Python)."""
    ScoreSettings(streams=streams, window=window)


def evaluate_on(
    model: CharRNN,
    vocab: Vocab,
    cfg: Config,
    text: Path | None = None,
    split: str | None = None,
    corpus_key: str | None = None,
    **kwargs,
) -> EvalResult:
    """`charlstm eval`'s choice of what to score: a file, or the training corpus's
    validation split (rebuilt from the corpus on this machine, which must still be the
    text the checkpoint was trained on: `corpus_key` is the key it recorded)."""
    check_eval_options(text, split, kwargs.get("streams", STREAMS), kwargs.get("window", WINDOW))
    if text is not None:
        if vocab.mode == "byte":  # any file: score its bytes as they are
            content = _read_bytes(text)
            return evaluate_ids(model, np.frombuffer(content, dtype=np.uint8), **kwargs)
        return evaluate_text(model, vocab, read_text_file(text), **kwargs)
    corpus = load_corpus(cfg.data, kwargs.get("console"))
    if corpus.vocab != vocab or (corpus_key is not None and corpus.key != corpus_key):
        raise CorpusError(changed_corpus(cfg.data.path, "score its validation split"))
    return evaluate_ids(model, corpus.split(cfg.data.val_fraction)[1], **kwargs)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CorpusError(f"cannot read {path}: {err.strerror}") from None


def read_text_file(path: Path) -> str:
    try:
        return _read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path} is not valid UTF-8 (byte {err.start})") from None


@dataclass(frozen=True)
class TaskScore:
    task: str
    per_n: dict[int, tuple[int, int]]  # N -> (exact matches, examples)

    @property
    def correct(self) -> int:
        return sum(c for c, _ in self.per_n.values())

    @property
    def total(self) -> int:
        return sum(t for _, t in self.per_n.values())

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    def to_dict(self) -> dict:
        return {
            "task": self.task,
            "accuracy": self.accuracy,
            "examples": self.total,
            "per_n": {str(n): c / t for n, (c, t) in sorted(self.per_n.items())},
        }


CONTEXT_LINES = 4  # correct lines read before each test example


def score_task(
    model: CharRNN,
    vocab: Vocab,
    name: str,
    count: int = default_of(TaskExamples, "count"),
    seed: int = default_of(TaskExamples, "seed"),
    n_min: int = default_of(TaskExamples, "n_min"),
    n_max: int = default_of(TaskExamples, "n_max"),
) -> TaskScore:
    """Exact-match score on fresh examples: prime with the given part, decode greedily up
    to the next newline, compare the determined part.

    A model trained with carried state has only ever read a line after other lines, never
    from a zero state, so each example is primed as it would appear in a corpus: after
    the CONTEXT_LINES correct lines before it (drawn with the test set, never scored)."""
    from charlstm.generate.sample import generate
    from charlstm.data.tasks import examples

    drawn = examples(name, count + CONTEXT_LINES, seed, n_min, n_max)
    per_n: dict[int, list[int]] = {}
    for i, example in enumerate(drawn[CONTEXT_LINES:]):
        context = "".join(e.line + "\n" for e in drawn[i : i + CONTEXT_LINES])
        prime = "\n" + context + example.given
        settings = SampleSettings(length=len(example.determined) + 2, greedy=True, stop="\n")
        answer = generate(model, vocab, prime, settings)[0][len(prime) :]
        tally = per_n.setdefault(example.n, [0, 0])
        tally[0] += answer == example.determined
        tally[1] += 1
    return TaskScore(name, {n: (c, t) for n, (c, t) in per_n.items()})
