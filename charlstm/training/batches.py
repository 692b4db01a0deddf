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


class TBPTTBatches:
    def __init__(
        self,
        ids: np.ndarray,
        batch_size: int,
        bptt: int,
        device: torch.device | str,
        streams: slice = slice(None),
    ):
        """`streams` picks this process's rows (data-parallel ranks own a block each)."""
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
        if self.device.type == "cuda":
            # From pinned memory the copy is queued without waiting for the GPU (the
            # caching host allocator keeps the buffer until the copy is done).
            chunk = chunk.pin_memory().to(self.device, non_blocking=True)
        else:
            chunk = chunk.to(self.device)
        return Window(chunk[:, :-1], chunk[:, 1:], starts_epoch=k == 0)

    @property
    def chars_per_window(self) -> int:
        return self.local_streams * self.bptt
