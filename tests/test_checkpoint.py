import dataclasses
import os
import threading
from pathlib import Path

import pytest
import torch

from charlstm import checkpoint as ckpt_mod
from charlstm.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    CheckpointWriter,
    load_checkpoint,
    resolve_checkpoint,
    restore_model,
    save_checkpoint,
)
from charlstm.errors import CheckpointError


def test_atomic_save_leaves_only_the_real_name(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, {"step": 3, "weights": torch.ones(2)})
    assert os.listdir(path.parent) == ["last.pt"]
    payload = load_checkpoint(path)
    assert payload["step"] == 3 and payload["format_version"] == FORMAT_VERSION


def test_background_writes_keep_the_values_of_their_moment_and_their_order(tmp_path, monkeypatch):
    gate, real_save = threading.Event(), ckpt_mod.save_checkpoint

    def slow_disk(path, payload):
        gate.wait(10)
        real_save(path, payload)

    monkeypatch.setattr(ckpt_mod, "save_checkpoint", slow_disk)
    writer, weights = CheckpointWriter(), torch.zeros(3)
    writer.write(tmp_path / "last.pt", {"step": 1, "w": weights})
    weights += 1  # training goes on while the disk is busy
    writer.write(tmp_path / "last.pt", {"step": 2, "w": weights})
    weights += 1  # and goes on: the queued writes must not see it
    assert not (tmp_path / "last.pt").exists()  # neither write has blocked training
    gate.set()
    writer.wait()
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["step"] == 2 and saved["w"].tolist() == [1.0, 1.0, 1.0]
    writer.close()


def test_a_failed_background_write_is_raised_at_the_next_call(tmp_path, monkeypatch):
    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    writer = CheckpointWriter()
    monkeypatch.setattr(torch, "save", disk_full)
    writer.write(tmp_path / "last.pt", {"step": 1})
    with pytest.raises(CheckpointError, match="No space left"):
        writer.wait()
    writer.close()


def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"step": 1})

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(
        CheckpointError, match="could not write checkpoint .*No space left.*previous checkpoint"
    ):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "charlstm-checkpoint", "x": RunsCode()}, path)
    with pytest.raises(CheckpointError, match="refused .*evil.pt.*could run code"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "cannot read .*truncated, corrupt"),
        (b"hello, I am not a checkpoint", "cannot read"),
        ({"something": "else"}, "not a charlstm checkpoint"),
        ({"format": "charlstm-checkpoint", "format_version": 99}, "format version 99"),
    ],
)
def test_broken_or_foreign_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "x.pt"
    if content is None:  # a real checkpoint cut in half
        save_checkpoint(path, {"w": torch.randn(1000)})
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        with open(path, "wb") as f:
            torch.save(content, f)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_resolve_run_folder_prefers_best(tmp_path, trained_run):
    assert resolve_checkpoint(trained_run).name == "best.pt"
    assert resolve_checkpoint(trained_run / "checkpoints" / "last.pt").name == "last.pt"
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        resolve_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="no best.pt or last.pt"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no runs under"):
        resolve_checkpoint(None, runs_dir=tmp_path / "runs")


def test_restores_the_model_on_cpu(trained_run):
    payload = load_checkpoint(trained_run / "checkpoints" / "best.pt", map_location="cpu")
    saved = Checkpoint.from_payload(payload)
    model, vocab = restore_model(saved), saved.vocab
    assert not model.training and vocab.size == model.vocab_size
    assert next(model.parameters()).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_checkpoint_loads_on_cpu(tmp_path):
    path = tmp_path / "gpu.pt"
    save_checkpoint(path, {"w": torch.ones(3, device="cuda")})
    assert load_checkpoint(path, map_location="cpu")["w"].device.type == "cpu"


# -- the schema --------------------------------------------------------------------------

FIXTURE = Path(__file__).parent / "fixtures" / "v1-lstm-ema.pt"


def test_a_format_1_checkpoint_still_loads_samples_and_scores_as_it_did():
    """Written by charlstm before the typed schema (format 1: a 1x8 LSTM, 6 steps, with
    a weight average); the greedy text and the loss are what that charlstm printed (a
    seeded text is pinned as today's sampler draws it: the noise a seed gives became a
    counter-based hash in format 3's time)."""
    import charlstm

    saved = ckpt_mod.read_checkpoint(FIXTURE)
    assert saved.step == 6 and len(saved.rank_rngs) == 1 and saved.schedule_steps is None
    assert saved.averaged_model is not None and saved.config.train.ema == 0.9
    model = charlstm.load(FIXTURE, "cpu")
    greedy = model.sample(prime="the ", length=40, greedy=True)
    assert greedy == "the " + "nnc" * 13 + "n"
    text = model.sample(prime="the ", length=40, seed=1, temperature=0.8)
    assert text == "the s cns\nmtothgnadnns\ns htcdo\nsrotmm  \nahsn"
    loss = model.score("the cat sat on the mat and the dog ran\n", streams=1).loss
    assert loss == pytest.approx(2.632493577505413, abs=1e-6)


def test_the_schema_round_trips_every_field(trained_run):
    saved = ckpt_mod.read_checkpoint(trained_run / "checkpoints" / "last.pt")
    again = Checkpoint.from_payload(saved.to_payload())
    for field in dataclasses.fields(Checkpoint):
        a, b = getattr(saved, field.name), getattr(again, field.name)
        assert a is b or a == b or (a != a and b != b), field.name  # nan == nan here


def test_a_payload_missing_a_field_is_one_line_naming_it(trained_run):
    payload = load_checkpoint(trained_run / "checkpoints" / "last.pt")
    del payload["corpus_key"]
    with pytest.raises(CheckpointError, match="damaged or inconsistent.*corpus_key"):
        Checkpoint.from_payload(payload, "last.pt")


def test_a_one_group_optimizer_state_resumes_as_the_two_groups_exactly():
    """Format 1 kept every parameter in one AdamW group; a resume lays its moments out
    in today's groups (matrices decayed, vectors not) without changing a number."""
    from charlstm.config import ModelConfig
    from charlstm.model import CharRNN
    from charlstm.training.optim import decay_groups, regrouped_optimizer_state

    torch.manual_seed(0)
    model = CharRNN(7, ModelConfig(hidden_size=8, embedding_dim=4, num_layers=1))
    old = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(2):
        old.zero_grad()
        model(torch.randint(0, 7, (2, 5)))[0].sum().backward()
        old.step()
    groups = decay_groups(model, 0.1)
    new = torch.optim.AdamW(groups, lr=0.01)
    new.load_state_dict(regrouped_optimizer_state(old.state_dict(), model, groups))
    assert [g["weight_decay"] for g in new.param_groups] == [0.1, 0.0]
    by_param = {id(p): new.state[p] for g in new.param_groups for p in g["params"]}
    for p in model.parameters():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(old.state[p][key], by_param[id(p)][key])
