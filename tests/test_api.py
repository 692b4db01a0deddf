"""The Python API: the same arguments give what the command line gives."""

import json

import pytest
from typer.testing import CliRunner

import charlstm
from charlstm.cli import app


@pytest.fixture(scope="module")
def model(trained_run):
    return charlstm.load(trained_run, device="cpu")


def test_package_exports_only_the_api():
    namespace: dict = {}
    exec("from charlstm import *", namespace)
    exported = {name for name in namespace if not name.startswith("__")}
    assert exported == {"load", "Model", "CharlstmError", "CheckpointError", "ConfigError",
                        "CorpusError", "VocabError"}  # fmt: skip


def test_attributes(model, trained_run):
    assert model.step == 300 and model.vocab.size > 10
    assert model.config.train.out_dir == str(trained_run)
    assert model.device.type == "cpu" and "2x64 lstm" in repr(model)


def test_sample_and_stream_match_the_command_line(model, trained_run):
    args = dict(prime="the cat", length=120, temperature=0.7, top_k=5, seed=11)
    text = model.sample(**args)
    assert text.startswith("the cat") and len(text) == 127
    assert "".join(model.stream(**args)) == text
    cli = CliRunner().invoke(app, ["sample", "-c", str(trained_run), "--prime", "the cat",
                                   "--length", "120", "--temperature", "0.7", "--top-k", "5",
                                   "--seed", "11"])  # fmt: skip
    assert cli.exit_code == 0 and cli.output == text + "\n"
    several = model.sample(prime="a ", length=30, seed=2, num_samples=3)
    assert isinstance(several, list) and len(several) == 3
    assert model.sample(prime="the", length=40, greedy=True, stop=".").count(".") == 0


def test_score_matches_eval(model, trained_run):
    path = trained_run.parent / "corpus.txt"
    score = model.score(path.read_text())
    cli = CliRunner().invoke(app, ["eval", "-c", str(trained_run), "--text", str(path), "--json"])
    numbers = json.loads(cli.output.strip().splitlines()[-1])  # the JSON is the last line
    assert score.loss == pytest.approx(numbers["loss"], rel=1e-12)
    assert score.chars == numbers["chars"] and score.bpc == pytest.approx(numbers["bpc"])
    assert score.perplexity == pytest.approx(numbers["perplexity"])


def test_errors_raise_charlstm_exceptions_never_exit(model, tmp_path):
    with pytest.raises(charlstm.VocabError, match="not in the model's vocabulary"):
        model.sample(prime="Ω")
    with pytest.raises(charlstm.CharlstmError, match="--temperature must be > 0"):
        model.sample(temperature=0)
    with pytest.raises(charlstm.CharlstmError, match="one sample"):
        model.stream(num_samples=2)
    with pytest.raises(charlstm.CheckpointError, match="checkpoint not found"):
        charlstm.load(tmp_path / "nothing.pt")
    with pytest.raises(charlstm.CharlstmError, match="device must be"):
        charlstm.load(tmp_path, device="tpu")
