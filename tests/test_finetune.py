"""Fine-tuning with train.init_from: the base model's numbers at step 0, a vocabulary that
grows without remapping, a head start over training from scratch, exact resume."""

import pytest
import torch
from typer.testing import CliRunner

from charlstm.checkpoint import load_checkpoint, load_for_inference
from charlstm.cli import app
from charlstm.errors import CheckpointError, ConfigError
from charlstm.evaluate import evaluate_text
from charlstm.training.trainer import Trainer
from tests.conftest import make_text, quiet_console, small_config


def fine_tune(corpus, out, base, *sets):
    return small_config(corpus, out, f"train.init_from={base}", *sets)


def test_at_step_zero_the_fine_tune_is_the_base_model(trained_run, tmp_path):
    corpus = tmp_path / "new.txt"
    corpus.write_text(make_text(seed=5).replace("dog", "cat"))  # fewer characters, no new one
    trainer = Trainer(
        fine_tune(corpus, tmp_path / "ft", trained_run), console=quiet_console(tmp_path / "log.txt")
    )
    base, saved = load_for_inference(trained_run)
    base_vocab = saved.vocab
    assert trainer.vocab == base_vocab  # characters the corpus lacks stay
    text = make_text(lines=50, seed=9)
    assert evaluate_text(trainer.model.eval(), trainer.vocab, text).loss == (
        evaluate_text(base, base_vocab, text).loss
    )


def test_new_characters_grow_the_vocabulary_and_the_old_ids_keep_their_rows(trained_run, tmp_path):
    corpus = tmp_path / "new.txt"
    corpus.write_text(make_text(seed=5).replace(".", "!").replace("dog", "dög"))
    trainer = Trainer(
        fine_tune(corpus, tmp_path / "ft", trained_run), console=quiet_console(tmp_path / "log.txt")
    )
    base = load_checkpoint(trained_run / "checkpoints" / "best.pt")
    old = base["vocab"]["code_points"]
    assert trainer.vocab.code_points[: len(old)] == tuple(old)
    assert set(trainer.vocab.code_points[len(old) :]) == {ord("!"), ord("ö")}
    weights = trainer.model.state_dict()
    for name in ("embedding.weight", "decoder.weight", "decoder.bias"):
        assert torch.equal(weights[name][: len(old)], base["model"][name])
    assert torch.equal(weights["rnn.weight_hh_l0"], base["model"]["rnn.weight_hh_l0"])
    # the ids are the grown vocabulary's: "ö" is encoded with its new id
    assert trainer.vocab.decode(trainer.data.batches.window(0).inputs[0].tolist())


def test_fine_tuning_beats_the_same_steps_from_scratch(trained_run, tmp_path):
    corpus = tmp_path / "new.txt"
    corpus.write_text(make_text(lines=600, seed=5).replace(".", "!").replace("dog", "dög"))
    steps = ["train.max_steps=40", "train.eval_every=40", "train.warmup_steps=5"]
    tuned = Trainer(
        fine_tune(corpus, tmp_path / "ft", trained_run, *steps),
        console=quiet_console(tmp_path / "log.txt"),
    ).run()
    scratch = Trainer(
        small_config(corpus, tmp_path / "scratch", *steps),
        console=quiet_console(tmp_path / "log.txt"),
    ).run()
    print(f"\nval loss after 40 steps: fine-tuned {tuned.best_val_loss:.4f}, "
          f"from scratch {scratch.best_val_loss:.4f}")  # fmt: skip
    assert tuned.best_val_loss < 0.8 * scratch.best_val_loss


def test_a_fine_tune_run_resumes_exactly(trained_run, tmp_path):
    corpus = tmp_path / "new.txt"
    corpus.write_text(make_text(seed=5).replace(".", "!"))
    common = ["train.decay_steps=20", "train.checkpoint_every=10", "train.eval_every=10"]
    straight = fine_tune(corpus, tmp_path / "a", trained_run, "train.max_steps=20", *common)
    Trainer(straight, console=quiet_console(tmp_path / "log.txt")).run()
    first = fine_tune(corpus, tmp_path / "b", trained_run, "train.max_steps=10", *common)
    Trainer(first, console=quiet_console(tmp_path / "log.txt")).run()
    result = CliRunner().invoke(app, ["train", "--quiet", "--resume", str(tmp_path / "b"),
                                      "--set", "train.max_steps=20"])  # fmt: skip
    assert result.exit_code == 0, result.output
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    assert b["step"] == 20 and b["config"]["train"]["init_from"] == str(trained_run)
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_bad_init_from_and_conflicting_model_settings_are_one_line(
    trained_run, tmp_path, corpus_file
):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"train.init_from: cannot read .*junk.pt"):
        Trainer(
            fine_tune(corpus_file, tmp_path / "x", junk),
            console=quiet_console(tmp_path / "log.txt"),
        )
    result = CliRunner().invoke(app, ["train", "--quiet", "--set", f"data.path={corpus_file}",
                                      "--set", f"train.out_dir={tmp_path / 'y'}",
                                      "--set", f"train.init_from={junk}"])  # fmt: skip
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    conflicting = fine_tune(corpus_file, tmp_path / "z", trained_run, "model.hidden_size=128")
    with pytest.raises(ConfigError, match="model.hidden_size is 128 but train.init_from"):
        Trainer(conflicting, console=quiet_console(tmp_path / "log.txt"))
