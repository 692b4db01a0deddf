"""Truncated-BPTT batches: B contiguous streams, read bptt characters at a time.

The training ids are cut into `batch_size` rows, each a contiguous stretch of the text
(as word_language_model's `batchify` does). With the text "abcdefghijklmnopqrstuvwx"
and batch_size 4:

    ┌ a b c d e f ┐
    │ g h i j k l │   window 0 (bptt 2): inputs  a b | g h | m n | s t
    │ m n o p q r │                      targets b c | h i | n o | t u
    └ s t u v w x ┘   window 1:          inputs  c d | i j | o p | u v ...

Row b of window k+1 starts exactly where row b of window k stopped, so the hidden state
that window k ends in is the right initial state for window k+1. The state is reset only
when the rows wrap around at the end of an epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charlstm.errors import CorpusError


@dataclass(frozen=True)
class Window:
    inputs: torch.Tensor  # (local_streams, bptt) int64
    targets: torch.Tensor  # (local_streams, bptt) int64, inputs shifted by one character
    starts_epoch: bool  # True for the first window of an epoch: begin from a zero state
    # Documents read from their start: the rows that begin a document here (their state
    # starts from zero); targets of -100 (padding, labels) are not predicted.
    fresh_rows: torch.Tensor | None = None


IGNORED = -100  # F.cross_entropy's ignore_index


def to_device(chunk: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        # From pinned memory the copy is queued without waiting for the GPU (the
        # caching host allocator keeps the buffer until the copy is done).
        return chunk.pin_memory().to(device, non_blocking=True)
    return chunk.to(device)


def unpredicted(targets: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Targets with the label ids taken out: a document's label is given, not guessed."""
    if labels is not None:
        targets = targets.masked_fill(torch.isin(targets, labels), IGNORED)
    return targets


def label_tensor(label_ids: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
    return torch.tensor(label_ids, device=device) if label_ids else None


class TBPTTBatches:
    def __init__(
        self,
        ids: np.ndarray,
        batch_size: int,
        bptt: int,
        device: torch.device | str,
        streams: slice = slice(None),
        label_ids: tuple[int, ...] = (),
    ):
        """`streams` picks this process's rows (data-parallel ranks own a block each);
        `label_ids` are never predicted (a carried stream of labelled documents)."""
        row_length = len(ids) // batch_size
        if row_length < bptt + 1:
            raise CorpusError(
                f"training text has {len(ids)} characters, fewer than one window of "
                f"batch_size x (bptt + 1) = {batch_size} x {bptt + 1} = {batch_size * (bptt + 1)};"
                " use a longer corpus or lower train.batch_size / train.bptt"
            )
        # The rows this process trains (all of them outside torchrun): batch_size counts
        # every rank's.
        self.local_streams = len(range(batch_size)[streams])
        self.bptt = bptt
        self.device = torch.device(device)
        self.labels = label_tensor(label_ids, self.device)
        # Only whole windows: every step has the same shape (no recompiles, fair averages).
        self.windows_per_epoch = (row_length - 1) // bptt
        used = batch_size * row_length
        # A view, not a copy: with a memory-mapped corpus each window reads only its own
        # batch_size x (bptt + 1) ids from the file, so memory does not grow with the
        # corpus, and a rank's view holds only its own rows.
        self.rows = ids[:used].reshape(batch_size, row_length)[streams]

    def window(self, index: int) -> Window:
        """Window number `index`, counting from the first step of training (any epoch)."""
        k = index % self.windows_per_epoch
        start = k * self.bptt
        chunk = torch.from_numpy(self.rows[:, start : start + self.bptt + 1].astype(np.int64))
        chunk = to_device(chunk, self.device)
        targets = unpredicted(chunk[:, 1:], self.labels)
        return Window(chunk[:, :-1], targets, starts_epoch=k == 0)

    @property
    def chars_per_window(self) -> int:
        return self.local_streams * self.bptt


class DocumentBatches:
    """Windows of whole documents, each read from the document start (zero state, then
    its opening end id and label): data.document_state=fresh.

    Every epoch deals the training documents, shuffled, to the rows one after another;
    a document longer than bptt takes several windows of its row, with the state
    carried between them. A window is as wide as the longest piece any row reads in it;
    a row whose document ends early is padded (and not scored), and starts the next
    document from zero in the next window. The epoch's layout is a pure function of the
    epoch number, so window(i) is the same on a resumed run. Each row holds about
    (training windows) / batch_size of them; a document cut by a row's end is
    finished from zero in the next row (at most one per row and epoch)."""

    def __init__(
        self,
        split,
        batch_size: int,
        bptt: int,
        device: torch.device | str,
        streams: slice = slice(None),
        seed: int = 0,
        label_ids: tuple[int, ...] = (),
    ):
        self.split, self.bptt, self.seed = split, bptt, seed
        self.device = torch.device(device)
        self.labels = label_tensor(label_ids, self.device)
        self.batch_size = batch_size
        self.streams = streams
        self.local_streams = len(range(batch_size)[streams])
        self.pieces = np.maximum(1, -(-(split.lengths[split.train] - 1) // bptt))  # ceil
        total = int(self.pieces.sum())
        self.windows_per_epoch = total // batch_size
        if self.windows_per_epoch < 1:
            raise CorpusError(
                f"{len(split.train):,} training documents make {total} window(s) of bptt "
                f"{bptt}, fewer than train.batch_size {batch_size}: lower train.batch_size"
            )
        # Characters predicted per window, on average (padding is no work done).
        self.chars_per_window = max(
            1,
            int((split.lengths[split.train] - 1).sum())
            * self.local_streams
            // (batch_size * self.windows_per_epoch),
        )
        self._epoch: tuple[int, np.ndarray, np.ndarray] | None = None

    def _layout(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(document, piece) of each row's windows in this epoch: (rows, windows)."""
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.split.train))
            pieces = self.pieces[order]
            docs = np.repeat(self.split.train[order], pieces)
            first = np.repeat(np.cumsum(pieces) - pieces, pieces)
            piece = np.arange(len(docs)) - first
            used = self.batch_size * self.windows_per_epoch
            shape = (self.batch_size, self.windows_per_epoch)
            self._epoch = (
                epoch,
                docs[:used].reshape(shape)[self.streams],
                piece[:used].reshape(shape)[self.streams],
            )
        return self._epoch[1], self._epoch[2]

    def window(self, index: int) -> Window:
        epoch, k = divmod(index, self.windows_per_epoch)
        docs, pieces = self._layout(epoch)
        parts = []
        for doc, piece in zip(docs[:, k].tolist(), pieces[:, k].tolist(), strict=True):
            span = self.split.span(doc)
            parts.append(span[piece * self.bptt : (piece + 1) * self.bptt + 1])
        width = max(len(p) for p in parts)
        inputs = np.zeros((len(parts), width - 1), dtype=np.int64)
        targets = np.full((len(parts), width - 1), IGNORED, dtype=np.int64)
        for r, part in enumerate(parts):
            inputs[r, : len(part) - 1] = part[:-1]
            targets[r, : len(part) - 1] = part[1:]
        fresh = (pieces[:, k] == 0) | (k == 0)
        inputs_t = to_device(torch.from_numpy(inputs), self.device)
        targets_t = unpredicted(to_device(torch.from_numpy(targets), self.device), self.labels)
        fresh_t = to_device(torch.from_numpy(fresh), self.device)
        return Window(inputs_t, targets_t, starts_epoch=False, fresh_rows=fresh_t)
