"""Loss, bits per character and perplexity of a model over a whole text, in order.

The text is scored once, every character exactly once, with the hidden state carried
from window to window. To use the hardware, the text can be walked as S contiguous
streams side by side; each stream after the first starts `BURN_IN` characters early and
does not score them, so it enters its own stretch with a warm state, as a single pass
would. `streams=1` is the exact single pass. The window length only bounds memory: the
result does not depend on it.

Documents (data.documents) are scored one by one from the document start, each end
predicted and counted; a synthetic task by exact match on fresh examples.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from charlstm.config import Config
from charlstm.data.corpus import read_bytes, read_text_file, training_corpus
from charlstm.data.split import DocumentSplit
from charlstm.data.vocab import Vocab
from charlstm.errors import CharlstmError, CorpusError
from charlstm.memory import check_scoring_fits
from charlstm.model import CharRNN, bits_per_char, evaluating
from charlstm.options import SampleSettings, ScoreSettings, TaskExamples, default_of
from charlstm.progress import Work

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
    cut: bool = False  # stopped early (`stop_when`): `chars` is what was scored

    @property
    def bpc(self) -> float:
        return bits_per_char(self.loss)

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
    stop_when: Callable[[], bool] | None = None,
) -> EvalResult:
    """Score ids[1:] given everything before each character.

    `ids` may be a memory map: each window reads only its own columns from it. Stops
    between windows when asked (Ctrl-C, SIGTERM); with `show_progress`, long inputs get
    a progress bar with the time left. `stop_when()` true after a window ends the
    scoring there (a deadline): the result is the loss of what was scored, `cut`."""
    n = len(ids) - 1
    if n < 1:
        raise CorpusError("text to evaluate needs at least two characters")
    device = next(model.parameters()).device
    started = time.perf_counter()
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
    state, scored_chars, cut = None, 0, False
    with evaluating(model), Work("evaluating", n, "chars", console, visible=show_progress) as work:
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
            done = int(np.clip(np.minimum(hi_np, c1) - np.maximum(lo_np, c0), 0, None).sum())
            work.advance(done)
            scored_chars += done
            if stop_when is not None and c1 < width and stop_when():
                cut = True
                break
    seconds = time.perf_counter() - started
    # waits for the device
    return EvalResult(total.item() / max(scored_chars, 1), scored_chars, seconds, cut=cut)


@dataclass(frozen=True)
class EachLogProb:
    """Per scored id: its log-probability given every id before it, and the `top`
    likeliest ids at its place with theirs (empty lists when top is 0)."""

    log_probs: list[float]
    top: list[list[tuple[int, float]]]


@torch.no_grad()
def each_log_prob(
    model: CharRNN, ids: list[int], top: int = 0, window: int = WINDOW
) -> EachLogProb:
    """log p(ids[i] | ids[:i]) for every i >= 1, read from the zero state as
    evaluate_ids reads a text (so they sum to its total), `window` ids at a time."""
    device = next(model.parameters()).device
    log_probs: list[float] = []
    tops: list[list[tuple[int, float]]] = []
    state = None
    with evaluating(model):
        for start in range(0, len(ids) - 1, window):
            part = torch.tensor([ids[start : start + window + 1]], device=device)
            logits, state = model(part[:, :-1], state)
            logp = F.log_softmax(logits[0].double(), dim=-1)
            log_probs += logp.gather(1, part[0, 1:, None])[:, 0].tolist()
            if top:
                values, best = logp.topk(min(top, logp.shape[1]), dim=-1)
                rows = zip(best.tolist(), values.tolist(), strict=True)
                tops += [list(zip(i, v, strict=True)) for i, v in rows]
    return EachLogProb(log_probs, tops)


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
            content = read_bytes(text)
            return evaluate_ids(model, np.frombuffer(content, dtype=np.uint8), **kwargs)
        return evaluate_text(model, vocab, read_text_file(text), **kwargs)
    corpus = training_corpus(
        cfg.data, vocab, corpus_key, "score its validation split", kwargs.get("console")
    )
    return evaluate_ids(model, corpus.split(cfg.data.val_fraction)[1], **kwargs)


# Documents scored side by side, and ids read per call: memory stays bounded.
SCORE_ROWS = 256
SCORE_WINDOW = 512


@dataclass(frozen=True)
class DocumentScore:
    text: str
    log_prob: float  # ln P(text, then the end | the document start), nats
    chars: int  # characters of the text (the end is one more prediction)
    label: str | None = None

    @property
    def loss(self) -> float:
        """Nats per prediction: each character and the end."""
        return -self.log_prob / (self.chars + 1)

    @property
    def bpc(self) -> float:
        return bits_per_char(self.loss)

    def to_dict(self) -> dict:
        row = {"text": self.text}
        if self.label is not None:
            row["label"] = self.label
        row |= {
            "loss": self.loss,
            "bpc": self.bpc,
            "log_prob": self.log_prob,
            "chars": self.chars,
        }
        return row


@torch.no_grad()
def sequence_log_probs(
    model: CharRNN,
    sequences: list,
    given: list[int],
    window: int = SCORE_WINDOW,
    stop_when: Callable[[], bool] | None = None,
    show_progress: bool = False,
    console: Console | None = None,
) -> list[float | None]:
    """ln P(sequence[given[i] + 1:] | sequence[: given[i] + 1]) for each id sequence, each
    read from the zero state; scored as padded batches of similar lengths, in windows
    of `window` ids with the state carried, so memory does not grow with a document.
    `stop_when()` true after a batch ends the scoring there: those not reached are None.
    A stop request ends it between batches; with `show_progress`, a long one shows a bar."""
    device = next(model.parameters()).device
    totals: list[float | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    scoring = Work("scoring documents", len(sequences), "documents", console,
                   visible=show_progress)  # fmt: skip
    with evaluating(model), scoring as work:
        for b in range(0, len(order), SCORE_ROWS):
            rows = order[b : b + SCORE_ROWS]
            width = max(len(sequences[i]) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            scored = np.zeros((len(rows), width - 1), dtype=bool)
            for r, i in enumerate(rows):
                seq = sequences[i]
                ids[r, : len(seq)] = seq
                scored[r, given[i] : len(seq) - 1] = True
            ids_t, scored_t = torch.from_numpy(ids).to(device), torch.from_numpy(scored).to(device)
            total = torch.zeros(len(rows), dtype=torch.float64, device=device)
            state = None
            for c0 in range(0, width - 1, window):
                chunk = ids_t[:, c0 : c0 + window + 1]
                logits, state = model(chunk[:, :-1], state)
                nll = F.cross_entropy(
                    logits.float().transpose(1, 2), chunk[:, 1:], reduction="none"
                )
                total += (nll.double() * scored_t[:, c0 : c0 + nll.shape[1]]).sum(dim=1)
            for r, value in zip(rows, (-total).tolist(), strict=True):  # waits for the device
                totals[r] = value
            work.advance(len(rows))
            if stop_when is not None and b + SCORE_ROWS < len(order) and stop_when():
                break
    return totals


def score_texts(
    model: CharRNN, vocab: Vocab, texts: list[str], label: str | None = None, **progress
) -> list[DocumentScore]:
    """Each text scored as a whole document from the document start (with `label`'s
    control id, if given), in input order. Characters outside the vocabulary are a
    VocabError naming them. `progress`: show_progress and console, as for
    sequence_log_probs."""
    start = vocab.document_start(label)
    sequences = [start + vocab.encode(t).tolist() + [vocab.end_id] for t in texts]
    given = [len(start) - 1] * len(texts)
    log_probs = sequence_log_probs(model, sequences, given, **progress)
    return [
        DocumentScore(t, lp, len(s) - len(start) - 1, label)
        for t, s, lp in zip(texts, sequences, log_probs, strict=True)
    ]


def score_split(
    model: CharRNN,
    vocab: Vocab,
    split: DocumentSplit,
    docs: np.ndarray,
    stop_when: Callable[[], bool] | None = None,
):
    """Loss per prediction over documents of the corpus, each from its start: an
    EvalResult as `evaluate_ids` gives for a text (cut short by `stop_when` as it is),
    and the loss per label."""
    started = time.perf_counter()
    sequences = [split.span(int(d)) for d in docs]
    labelled = {int(i) for i in vocab.label_ids}
    given = [1 if len(s) > 1 and int(s[1]) in labelled else 0 for s in sequences]
    log_probs = sequence_log_probs(model, sequences, given, stop_when=stop_when)
    scored = [
        (seq, g, lp, len(seq) - 1 - g)
        for seq, g, lp in zip(sequences, given, log_probs, strict=True)
        if lp is not None
    ]
    n = sum(p for *_, p in scored)
    cut = len(scored) < len(sequences)
    result = EvalResult(-sum(lp for _, _, lp, _ in scored) / n, n,
                        time.perf_counter() - started, cut=cut)  # fmt: skip
    per_label: dict[str, list[float]] = {}
    for seq, g, lp, p in scored:
        if g:
            name = vocab.label_of(int(seq[1]))
            tally = per_label.setdefault(name, [0.0, 0])
            tally[0] -= lp
            tally[1] += p
    return result, {name: nll / count for name, (nll, count) in sorted(per_label.items())}


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
    from charlstm.data.tasks import examples
    from charlstm.generate.sample import draw_texts

    drawn = examples(name, count + CONTEXT_LINES, seed, n_min, n_max)
    per_n: dict[int, list[int]] = {}
    for i, example in enumerate(drawn[CONTEXT_LINES:]):
        context = "".join(e.line + "\n" for e in drawn[i : i + CONTEXT_LINES])
        prime = "\n" + context + example.given
        settings = SampleSettings(length=len(example.determined) + 2, greedy=True, stop="\n")
        answer = draw_texts(model, vocab, prime, settings)[0][len(prime) :]
        tally = per_n.setdefault(example.n, [0, 0])
        tally[0] += answer == example.determined
        tally[1] += 1
    return TaskScore(name, {n: (c, t) for n, (c, t) in per_n.items()})
