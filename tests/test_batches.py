import numpy as np
import pytest
import torch

from charlstm.errors import CorpusError
from charlstm.training.batches import TBPTTBatches


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


def test_windows_read_from_the_memory_map_equal_the_in_ram_windows(tmp_path):
    ids = np.random.default_rng(0).integers(0, 300, 10_007).astype(np.int16)
    np.save(tmp_path / "ids.npy", ids)
    mapped = np.load(tmp_path / "ids.npy", mmap_mode="r")
    from_map = TBPTTBatches(mapped, batch_size=6, bptt=20, device="cpu")
    in_ram = TBPTTBatches(np.array(ids), batch_size=6, bptt=20, device="cpu")
    assert isinstance(from_map.rows, np.memmap)  # a view of the file, not a copy
    for k in (0, 1, 7, from_map.windows_per_epoch - 1, from_map.windows_per_epoch + 3):
        a, b = from_map.window(k), in_ram.window(k)
        assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
        assert a.inputs.dtype == torch.int64 and a.starts_epoch == b.starts_epoch
    # a rank's view holds its own rows only
    rank1 = TBPTTBatches(mapped, batch_size=6, bptt=20, device="cpu", streams=slice(3, 6))
    assert rank1.rows.shape[0] == 3
    assert torch.equal(rank1.window(5).inputs, in_ram.window(5).inputs[3:])
