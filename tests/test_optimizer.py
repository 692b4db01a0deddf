"""train.optimizer: Muon on the recurrent matrices beside AdamW, for every cell, learning,
resuming bit-exactly, rolling back and refusing a change on resume."""

from __future__ import annotations

import pytest
import torch
from conftest import quiet_console, scalars, small_config

from charlstm.checkpoint import Checkpoint, load_checkpoint
from charlstm.config import Config
from charlstm.errors import CharlstmError, ConfigError
from charlstm.training.optim import MuonAndAdamW
from charlstm.training.trainer import Trainer


def run(cfg: Config, tmp_path, resume=None) -> Trainer:
    saved = None
    if resume is not None:
        saved = Checkpoint.from_payload(load_checkpoint(resume / "checkpoints" / "last.pt"))
    trainer = Trainer(cfg, resume=saved, console=quiet_console(tmp_path / "log.txt"), quiet=True)
    trainer.run()
    return trainer


@pytest.mark.parametrize("cell", ["lstm", "peephole", "gru", "rnn"])
def test_muon_takes_the_recurrent_matrices_and_the_loss_falls(corpus_file, tmp_path, cell):
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=60",
                       "train.optimizer=muon", f"model.cell={cell}", "log.log_every=5")  # fmt: skip
    trainer = run(cfg, tmp_path)
    optimizer = trainer.optimizer
    assert isinstance(optimizer, MuonAndAdamW)
    on_muon = {id(p) for g in optimizer.muon.param_groups for p in g["params"]}
    for name, p in trainer.model.named_parameters():
        assert (id(p) in on_muon) == (name.startswith("rnn.weight_") and p.dim() == 2), name
    losses = [loss for _, loss in scalars(tmp_path / "run", "train/loss")]
    assert len(losses) == 12 and losses[-1] < 0.8 * losses[0]


def test_a_muon_run_resumes_bit_exactly(corpus_file, tmp_path):
    common = ("train.optimizer=muon", "train.eval_every=10", "train.checkpoint_every=10",
              "train.decay_steps=40", "model.dropout=0.1")  # fmt: skip
    run(small_config(corpus_file, tmp_path / "straight", "train.max_steps=40", *common), tmp_path)
    run(small_config(corpus_file, tmp_path / "split", "train.max_steps=20", *common), tmp_path)
    cfg = small_config(corpus_file, tmp_path / "split", "train.max_steps=40", *common)
    run(cfg, tmp_path, resume=tmp_path / "split")
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    assert split["step"] == 40 and set(split["optimizer"]) == {"adamw", "muon"}
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, split["model"][name]), name


def test_the_optimizer_cannot_change_on_resume_and_a_bad_one_is_one_line(corpus_file, tmp_path):
    run(small_config(corpus_file, tmp_path / "run", "train.max_steps=5"), tmp_path)
    cfg = small_config(corpus_file, tmp_path / "run", "train.max_steps=10",
                       "train.optimizer=muon")  # fmt: skip
    with pytest.raises(CharlstmError, match="train.optimizer \\('adamw' -> 'muon'\\)"):
        run(cfg, tmp_path, resume=tmp_path / "run")
    with pytest.raises(ConfigError, match="train.optimizer"):
        small_config(corpus_file, tmp_path / "x", "train.optimizer=sgd")
