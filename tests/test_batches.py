import numpy as np
import pytest
import torch

from charlstm.batches import TBPTTBatches
from charlstm.errors import CorpusError


def test_rows_are_contiguous_streams_and_windows_continue_exactly():
    ids = np.arange(4 * 25, dtype=np.int32)  # 4 rows of 25
    b = TBPTTBatches(ids, batch_size=4, bptt=6, device="cpu")
    assert b.windows_per_epoch == 4  # (25 - 1) // 6
    w0, w1 = b.window(0), b.window(1)
    assert torch.equal(w0.inputs[1], torch.arange(25, 31))
    assert torch.equal(w0.targets, w0.inputs + 1)  # targets are the next characters
    # window k+1 of every stream starts right after window k's last input
    assert torch.equal(w1.inputs[:, 0], w0.inputs[:, -1] + 1)
    assert torch.equal(w1.inputs[:, 0], w0.targets[:, -1])
    stream = torch.cat([b.window(k).inputs for k in range(4)], dim=1)
    assert torch.equal(stream, torch.arange(100).reshape(4, 25)[:, :24])


def test_epoch_wraps_and_only_then_starts_fresh():
    b = TBPTTBatches(np.arange(200, dtype=np.uint8), batch_size=2, bptt=10, device="cpu")
    starts = [b.window(k).starts_epoch for k in range(2 * b.windows_per_epoch)]
    assert starts == ([True] + [False] * (b.windows_per_epoch - 1)) * 2
    assert torch.equal(b.window(b.windows_per_epoch).inputs, b.window(0).inputs)
    assert b.window(0).inputs.dtype == torch.int64


def test_corpus_shorter_than_one_batch_of_windows():
    with pytest.raises(
        CorpusError, match=r"fewer than one window of batch_size x \(bptt \+ 1\) = 8 x 11"
    ):
        TBPTTBatches(np.arange(80, dtype=np.uint8), batch_size=8, bptt=10, device="cpu")
