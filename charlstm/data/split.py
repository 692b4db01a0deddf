"""Documents: a corpus cut into short texts (data.documents), each read from the same
start (the end id of the document before, then its label), split whole into training
and held-out documents, and scored one by one from that start.

A document's span in the corpus ids runs from its opening end id to its closing one,
both included: its inputs are span[:-1], its targets span[1:], so the end of each
document is predicted and counted (makemore's measure), its label is given, never
predicted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charlstm.config import DataConfig
from charlstm.data.corpus import changed_corpus, load_corpus
from charlstm.errors import CorpusError
from charlstm.evaluate import EvalResult
from charlstm.model import CharRNN
from charlstm.data.vocab import Vocab

# The held-out documents are drawn with this seed: the same split on every machine.
SPLIT_SEED = 0
# Rows scored side by side, and characters read per call: memory stays bounded.
SCORE_ROWS = 256
SCORE_WINDOW = 512


@dataclass(frozen=True)
class DocumentSplit:
    ids: np.ndarray  # the corpus ids (a memory map)
    starts: np.ndarray  # where each document's opening end id is
    lengths: np.ndarray  # ids in each span, both end ids included
    train: np.ndarray  # document numbers for training, in corpus order
    val: np.ndarray  # document numbers held out, in corpus order

    def span(self, doc: int) -> np.ndarray:
        start = int(self.starts[doc])
        return self.ids[start : start + int(self.lengths[doc])]

    def texts(self, vocab: Vocab, docs: np.ndarray) -> list[str]:
        return [vocab.decode(self.span(int(d)).tolist()) for d in docs]

    def train_stream(self) -> np.ndarray:
        """The training documents as one stream, each end id shared by the two documents
        it separates (the state carried across: data.document_state=carried)."""
        keep = np.zeros(len(self.ids), dtype=bool)
        keep[0] = True
        for doc in self.train:
            start = int(self.starts[doc])
            keep[start + 1 : start + int(self.lengths[doc])] = True
        return self.ids[keep]


def split_documents(ids: np.ndarray, vocab: Vocab, cfg: DataConfig) -> DocumentSplit:
    """The documents of a corpus and a random share of them held out (data.val_fraction,
    at most data.val_max_documents), the same every time."""
    ends = np.flatnonzero(ids == vocab.end_id)
    count = len(ends) - 1
    if count < 2:
        raise CorpusError(
            f"corpus {cfg.path} holds {count} document(s): at least 2 are needed (one to "
            "train on, one to hold out); check data.documents"
        )
    held = max(1, int(count * cfg.val_fraction))
    held = min(held, cfg.val_max_documents or held, count - 1)
    order = np.random.default_rng(SPLIT_SEED).permutation(count)
    lengths = np.diff(ends) + 1
    return DocumentSplit(ids, ends[:-1], lengths, np.sort(order[held:]), np.sort(order[:held]))


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
        return self.loss / math.log(2)

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
    model: CharRNN, sequences: list, given: list[int], window: int = SCORE_WINDOW
) -> list[float]:
    """ln P(sequence[given[i] + 1:] | sequence[: given[i] + 1]) for each id sequence, each
    read from the zero state; scored as padded batches of similar lengths, in windows
    of `window` ids with the state carried, so memory does not grow with a document."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals = [0.0] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    try:
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
    finally:
        model.train(was_training)
    return totals


def score_texts(
    model: CharRNN, vocab: Vocab, texts: list[str], label: str | None = None
) -> list[DocumentScore]:
    """Each text scored as a whole document from the document start (with `label`'s
    control id, if given), in input order. Characters outside the vocabulary are a
    VocabError naming them."""
    start = vocab.document_start(label)
    sequences = [start + vocab.encode(t).tolist() + [vocab.end_id] for t in texts]
    given = [len(start) - 1] * len(texts)
    log_probs = sequence_log_probs(model, sequences, given)
    return [
        DocumentScore(t, lp, len(s) - len(start) - 1, label)
        for t, s, lp in zip(texts, sequences, log_probs, strict=True)
    ]


def score_split(model: CharRNN, vocab: Vocab, split: DocumentSplit, docs: np.ndarray):
    """Loss per prediction over documents of the corpus, each from its start: an
    EvalResult as `evaluate_ids` gives for a text, and the loss per label."""
    started = time.perf_counter()
    sequences = [split.span(int(d)) for d in docs]
    labelled = {int(i) for i in vocab.label_ids}
    given = [1 if len(s) > 1 and int(s[1]) in labelled else 0 for s in sequences]
    log_probs = sequence_log_probs(model, sequences, given)
    predictions = [len(s) - 1 - g for s, g in zip(sequences, given, strict=True)]
    n = sum(predictions)
    result = EvalResult(-sum(log_probs) / n, n, time.perf_counter() - started)
    per_label: dict[str, list[float]] = {}
    for seq, g, lp, p in zip(sequences, given, log_probs, predictions, strict=True):
        if g:
            name = vocab.label_of(int(seq[1]))
            tally = per_label.setdefault(name, [0.0, 0])
            tally[0] -= lp
            tally[1] += p
    return result, {name: nll / count for name, (nll, count) in sorted(per_label.items())}


def load_split(cfg: DataConfig, vocab: Vocab, corpus_key: str | None, what: str, console=None):
    """The documents of the corpus a model was trained on, rebuilt on this machine (it
    must still be that text), split as training split them."""
    corpus = load_corpus(cfg, console, quiet=console is None)
    if corpus.vocab != vocab or (corpus_key is not None and corpus.key != corpus_key):
        raise CorpusError(changed_corpus(cfg.path, what))
    return split_documents(corpus.ids, vocab, cfg)


def read_documents(path, cfg: DataConfig) -> list[tuple[str | None, str]]:
    """Documents to score, in order: each line of a text file (with the label before
    data.label_separator when the model has one), or each record of a .jsonl file
    (`text`, and `label` if present)."""
    import json
    from pathlib import Path

    from charlstm.evaluate import read_text_file
    from charlstm.data.documents import label_separator

    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"--documents {path}: no such file")
    text = read_text_file(path)
    if path.name.endswith(".jsonl"):
        docs = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{path} line {number} is not JSON ({err.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CorpusError(f'{path} line {number} has no "text" string')
            label = record.get("label")
            docs.append((str(label) if label is not None else None, record["text"]))
        return docs
    separator = label_separator(cfg) if cfg.label_separator is not None else None
    docs = []
    for line in text.splitlines():
        if separator is not None and separator in line:
            label, _, line = line.partition(separator)
            docs.append((label, line))
        else:
            docs.append((None, line))
    return docs
