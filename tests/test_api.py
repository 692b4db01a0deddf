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
    with pytest.raises(charlstm.CharlstmError, match="^temperature must be > 0"):
        model.sample(temperature=0)
    with pytest.raises(charlstm.CharlstmError, match="one sample"):
        model.stream(num_samples=2)
    with pytest.raises(charlstm.CheckpointError, match="checkpoint not found"):
        charlstm.load(tmp_path / "nothing.pt")
    with pytest.raises(charlstm.CharlstmError, match="device must be"):
        charlstm.load(tmp_path, device="tpu")


def test_one_entry_point_decides_how_to_generate(model):
    """Model.generate is what sample(), search() and the command line call: one
    settings object in, one Generation out, what does not apply refused before work."""
    from charlstm.options import SampleSettings

    drawn = model.generate(SampleSettings(prime="the ", length=30, seed=4, num_samples=2))
    assert drawn.mode == "sample" and drawn.asked == 2
    assert drawn.texts == model.sample(prime="the ", length=30, seed=4, num_samples=2)
    assert all(s.log_prob is None for s in drawn.samples)  # a plain draw is not scored
    found = model.generate(prime="the ", length=30, beam=3)
    assert found.mode == "search" and found.to_dict()["text"] == found.texts[0]
    assert found.samples[0] == model.search(prime="the ", length=30, beam=3)
    assert found.samples[0].bpc > 0 and found.samples[0].chars == 30
    for option in ({"documents": 3}, {"label": "x"}):
        with pytest.raises(charlstm.VocabError, match="need a document model"):
            model.generate(**option)


def test_the_server_request_holds_no_default_of_its_own():
    from charlstm.options import SampleSettings
    from charlstm.serve.protocol import SampleRequest

    assert SampleRequest().to_settings() == SampleSettings()
    assert SampleRequest(length=7, beam=2).to_settings() == SampleSettings(length=7, beam=2)


def test_the_version_is_printed():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output == f"charlstm {charlstm.__version__}\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length": 2.5}, "length must be a whole number (got 2.5)"),
        ({"length": 10**12}, "length must be in 0..10,000,000"),
        ({"num_samples": "3"}, "num_samples must be a whole number (got '3')"),
        ({"temperature": "hot"}, "temperature must be a number (got 'hot')"),
        ({"length": 2_000_000, "num_samples": 100}, "at most 100,000,000 characters in all"),
    ],
)
def test_the_python_api_checks_each_number_as_the_command_line_does(trained_run, options, message):
    import charlstm
    from charlstm.errors import CharlstmError

    model = charlstm.load(trained_run)
    with pytest.raises(CharlstmError) as raised:
        model.sample(**options)
    assert str(raised.value).startswith(message)  # the field, not the flag
