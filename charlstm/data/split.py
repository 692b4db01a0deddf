"""Documents split whole into training and held-out ones (data.documents), and the
documents a user gives to score.

A document's span in the corpus ids runs from its opening end id to its closing one,
both included: its inputs are span[:-1], its targets span[1:], so the end of each
document is predicted and counted (makemore's measure), its label is given, never
predicted. Scoring them is charlstm.evaluate's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlstm.config import DataConfig
from charlstm.data.corpus import read_text_file, training_corpus
from charlstm.data.documents import label_separator
from charlstm.data.vocab import Vocab
from charlstm.errors import CorpusError

# The held-out documents are drawn with this seed: the same split on every machine.
SPLIT_SEED = 0


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
        return self.stream(self.train)

    def stream(self, docs: np.ndarray) -> np.ndarray:
        """These documents as one stream, each end id shared by the two it separates."""
        keep = np.zeros(len(self.ids), dtype=bool)
        keep[0] = True
        for doc in docs:
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


def load_split(cfg: DataConfig, vocab: Vocab, corpus_key: str | None, what: str, console=None):
    """The documents of the corpus a model was trained on, rebuilt on this machine (it
    must still be that text), split as training split them."""
    corpus = training_corpus(cfg, vocab, corpus_key, what, console)
    return split_documents(corpus.ids, vocab, cfg)


def read_documents(path, cfg: DataConfig) -> list[tuple[str | None, str]]:
    """Documents to score, in order: each line of a text file (with the label before
    data.label_separator when the model has one), or each record of a .jsonl file
    (`text`, and `label` if present)."""
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
