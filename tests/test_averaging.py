"""train.ema: validation, best.pt and every inference path use an exponential moving
average of the weights; training and resume keep the weights themselves."""

import numpy as np
import torch

from charlstm.checkpoint import Checkpoint, load_checkpoint, restore_model
from charlstm.evaluate import evaluate_ids
from charlstm.training.averaging import WeightAverage
from charlstm.training.trainer import Trainer
from tests.conftest import quiet_console, small_config


def test_the_average_follows_its_formula_and_is_applied_only_inside_the_block():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.9)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update(step=100)  # past the warm-up: the decay itself
    expected = [0.9 * s + 0.1 * (s + 1.0) for s in start]
    for got, want in zip(average.average, expected, strict=True):
        assert torch.allclose(got, want)
    own = [p.detach().clone() for p in model.parameters()]
    with average.applied():
        for p, want in zip(model.parameters(), expected, strict=True):
            assert torch.allclose(p, want)
    for p, mine in zip(model.parameters(), own, strict=True):
        assert torch.equal(p, mine)
    early = WeightAverage(model, decay=0.999)
    early.update(step=1)  # the first steps weigh the new weights by 9/11 at least
    for got, mine in zip(early.average, own, strict=True):
        assert torch.equal(got, mine)


def train(corpus, out, tmp_path, *sets, resume=None):
    cfg = small_config(
        corpus, out, "train.ema=0.9", "train.eval_every=10", "train.decay_steps=30", *sets
    )
    console = quiet_console(tmp_path / "console.txt")
    saved = Checkpoint.from_payload(resume) if resume is not None else None
    trainer = Trainer(cfg, resume=saved, console=console, quiet=True)
    trainer.run()
    return trainer, load_checkpoint(out / "checkpoints" / "last.pt")


def test_validation_and_inference_use_the_average_and_training_its_own_weights(
    corpus_file, tmp_path
):
    trainer, payload = train(corpus_file, tmp_path / "run", tmp_path, "train.max_steps=30")
    raw, averaged = payload["model"], payload["averaged_model"]
    assert all(torch.equal(raw[k], v) for k, v in trainer.model.state_dict().items())
    assert not torch.equal(raw["decoder.weight"], averaged["decoder.weight"])
    model = restore_model(
        Checkpoint.from_payload(payload)
    )  # what sample, eval, inspect and export run
    assert all(torch.equal(averaged[k], v) for k, v in model.state_dict().items())
    # the last validation scored the average, not the weights it averages
    streams = trainer.cfg.train.eval_streams
    val_ids = trainer.data.val_ids
    assert evaluate_ids(model, val_ids, streams=streams).loss == payload["last_val_loss"]
    with torch.no_grad():
        own = evaluate_ids(trainer.model.eval(), trainer.data.val_ids, streams=streams).loss
    assert own != payload["last_val_loss"]


def test_a_resumed_run_continues_its_average_exactly(corpus_file, tmp_path):
    _, straight = train(corpus_file, tmp_path / "a", tmp_path, "train.max_steps=24")
    _, half = train(corpus_file, tmp_path / "b", tmp_path, "train.max_steps=12")
    _, resumed = train(corpus_file, tmp_path / "b", tmp_path, "train.max_steps=24", resume=half)
    for key in ("model", "averaged_model"):
        for name, tensor in straight[key].items():
            assert torch.equal(tensor, resumed[key][name]), (key, name)
    assert np.isclose(straight["best_val_loss"], resumed["best_val_loss"])
