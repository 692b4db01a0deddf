"""What a run trains on and validates with, built once from the corpus: the batches of
this rank, the stretch (or the documents) validation scores, the log sample's prime and
the line that describes the corpus. Plain text and documents differ only here; the
trainer asks the one object to `validate`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from charlstm.config import Config
from charlstm.data.corpus import Corpus
from charlstm.data.split import DocumentSplit, split_documents
from charlstm.data.vocab import Vocab
from charlstm.evaluate import EvalResult, evaluate_ids, score_split
from charlstm.model import CharRNN
from charlstm.training.batches import DocumentBatches, TBPTTBatches
from charlstm.training.monitor import sample_prime


@dataclass
class TextData:
    """One stream of text: TBPTT batches of the training part, and the same stretch
    of the validation part every time (see TrainConfig.eval_chars)."""

    batches: TBPTTBatches
    val_ids: np.ndarray  # +1: the targets of the last character scored
    sample_prime: str
    note: str
    eval_streams: int

    @property
    def val_chars(self) -> int:
        return len(self.val_ids) - 1

    def validate(self, model: CharRNN, stop_when: Callable[[], bool] | None) -> EvalResult:
        return evaluate_ids(model, self.val_ids, streams=self.eval_streams, stop_when=stop_when)


@dataclass
class DocumentData:
    """Whole documents: read from their start (fresh) or as one stream (carried);
    validation scores each held-out document from its start, as sampling begins."""

    batches: DocumentBatches | TBPTTBatches
    split: DocumentSplit
    val_docs: np.ndarray
    vocab: Vocab
    note: str
    sample_prime: str = ""

    @property
    def val_chars(self) -> int:
        return int((self.split.lengths[self.val_docs] - 1).sum())

    def validate(self, model: CharRNN, stop_when: Callable[[], bool] | None) -> EvalResult:
        return score_split(model, self.vocab, self.split, self.val_docs, stop_when=stop_when)[0]


TrainingData = TextData | DocumentData


def training_data(
    corpus: Corpus, cfg: Config, device: torch.device, streams: slice
) -> TrainingData:
    """This rank's training data (`streams`: its rows of the batch) and the validation
    data, from a corpus already in the run's vocabulary."""
    if corpus.vocab.documents:
        return _documents(corpus, cfg, device, streams)
    t = cfg.train
    train_ids, val_ids = corpus.split(cfg.data.val_fraction)
    vocab = corpus.vocab
    note = (
        f"{corpus.source}: {len(corpus.ids):,} chars in {corpus.num_files} file(s), "
        f"vocab {vocab.size} ({vocab.mode}), {len(train_ids):,} train / {len(val_ids):,} val"
    )
    return TextData(
        batches=TBPTTBatches(train_ids, t.batch_size, t.bptt, device, streams),
        val_ids=val_ids[: t.eval_chars + 1] if t.eval_chars else val_ids,
        sample_prime=sample_prime(cfg.log.sample_prime, vocab, train_ids),
        note=note,
        eval_streams=t.eval_streams,
    )


def _documents(corpus: Corpus, cfg: Config, device: torch.device, streams: slice) -> DocumentData:
    t, vocab = cfg.train, corpus.vocab
    split = split_documents(corpus.ids, vocab, cfg.data)
    val = split.val
    if t.eval_chars:  # the same documents every time, about eval_chars of them
        within = np.cumsum(split.lengths[val] - 1) <= t.eval_chars
        val = val[: max(1, int(within.sum()))]
    labels = vocab.label_ids
    if cfg.data.document_state == "fresh":
        batches = DocumentBatches(split, t.batch_size, t.bptt, device, streams, t.seed, labels)
    else:
        batches = TBPTTBatches(split.train_stream(), t.batch_size, t.bptt, device, streams, labels)
    note = (
        f"{corpus.source}: {len(split.starts):,} documents ({cfg.data.documents}, "
        f"{cfg.data.document_state} state) in {corpus.num_files} file(s), vocab "
        f"{vocab.size} ({vocab.mode}"
        + (f", {len(vocab.labels)} labels" if vocab.labels else "")
        + f"), {len(split.train):,} train / {len(split.val):,} val documents"
    )
    return DocumentData(batches, split, val, vocab, note)
