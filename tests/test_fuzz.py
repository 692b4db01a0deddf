"""No input to the config loader or the sample options produces a traceback: each is
either accepted or rejected with a CharlstmError (one line at the command line)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlstm.checkpoint import load_for_inference
from charlstm.config import Config, all_keys
from charlstm.errors import CharlstmError
from charlstm.generate.sample import draw_texts
from charlstm.options import SampleSettings

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
keys = st.sampled_from(all_keys()) | st.text(max_size=15)


def accepted_or_config_error(build):
    try:
        return build()
    except CharlstmError as error:
        assert "\n" not in str(error)
        return None


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["data", "model", "train", "log"]) | st.text(max_size=6),
        st.dictionaries(
            st.text(max_size=14) | st.sampled_from([k.split(".")[1] for k in all_keys()]),
            values,
            max_size=4,
        )
        | values,
        max_size=4,
    )
    | values
)
def test_config_mappings(raw):
    cfg = accepted_or_config_error(lambda: Config.from_dict(raw))
    if cfg is not None:
        assert Config.from_dict(cfg.to_dict()) == cfg


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.builds(lambda k, v: f"{k}={v}", keys, st.text(max_size=12)) | st.text(max_size=20),
        max_size=4,
    )
)
def test_override_strings(overrides):
    accepted_or_config_error(lambda: Config.from_dict({}, overrides))


@pytest.fixture(scope="module")
def model_and_vocab(trained_run):
    model, saved = load_for_inference(trained_run)
    vocab = saved.vocab
    return model, vocab


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prime=st.text(max_size=8),
    length=st.integers(-5, 30),
    temperature=st.floats(allow_nan=True, allow_infinity=True),
    top_k=st.none() | st.integers(-3, 100),
    top_p=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    greedy=st.booleans(),
    num_samples=st.integers(-1, 3),
    stop=st.none() | st.text(max_size=3),
    unknown=st.sampled_from(["error", "skip", "drop", ""]),
)
def test_sample_options(
    model_and_vocab, prime, length, temperature, top_k, top_p, greedy, num_samples, stop, unknown
):
    model, vocab = model_and_vocab

    def run():
        s = SampleSettings(
            length=length, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
            seed=0, num_samples=num_samples, stop=stop, unknown=unknown,
        )  # fmt: skip
        return draw_texts(model, vocab, prime, s)

    texts = accepted_or_config_error(run)
    if texts is not None:
        assert len(texts) == num_samples


# -- every command's options, through the command line itself ------------------------

from typer.testing import CliRunner  # noqa: E402

from charlstm.cli import app  # noqa: E402

numbers = st.integers(-3, 40).map(str) | st.sampled_from(["0", "-1", "1e3", "x", "", "nan"])
words = st.text(max_size=6)


def accepted_or_one_line(args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    assert "Traceback" not in result.output, (args, result.output)
    if result.exit_code == 1:  # charlstm's own check: one line (the parser's are exit 2 here,
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.output)
    elif result.exit_code == 2:  # and one line through the entry point: test_cli)
        assert "Invalid value" in result.output or "Missing" in result.output, result.output


def options(pairs: dict) -> st.SearchStrategy[list[str]]:
    """Some of the given options, each with a drawn value."""
    return st.fixed_dictionaries({}, optional=pairs).map(
        lambda chosen: [a for k, v in chosen.items() for a in ([k] if v is True else [k, v])]
    )


CLI_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@CLI_SETTINGS
@given(
    options(
        {
            "--streams": numbers,
            "--window": numbers,
            "--split": st.sampled_from(["val", "train", ""]) | words,
            "--device": st.sampled_from(["cpu", "auto", "cuda:9", "gpu", "cuda:"]) | words,
            "--task": st.sampled_from(["counter", "state", "nope"]),
            "--n-min": numbers,
            "--n-max": numbers,
            "--count": numbers,
            "--json": st.just(True),
        }
    )
)
def test_eval_options(trained_run, args):
    if "--task" not in args and "--split" not in args:
        args += ["--text", str(trained_run.parent / "corpus.txt")]
    accepted_or_one_line(["eval", "-c", str(trained_run), *args])


@CLI_SETTINGS
@given(
    options(
        {
            "--max-chars": numbers,
            "--top": numbers,
            "--unknown": st.sampled_from(["error", "skip", "drop"]),
            "--format": st.sampled_from(["html", "json", "npz", "pdf", ""]),
            "--feature": st.sampled_from(["a=the", "b=(", "=x", "noequals", "c=[a-z]+"]),
        }
    ),
    st.text(max_size=10),
)
def test_inspect_options(trained_run, tmp_path, args, prime):
    out = str(tmp_path / "report.html")
    accepted_or_one_line(["inspect", "-c", str(trained_run), "--out", out, "--prime", prime, *args])


@CLI_SETTINGS
@given(
    st.sampled_from(["counter", "copy", "state", "selective-counter", "x"]),
    options({"--count": numbers, "--n-min": numbers, "--n-max": numbers, "--seed": numbers}),
)
def test_tasks_options(tmp_path, name, args):
    accepted_or_one_line(["tasks", "generate", name, "--out", str(tmp_path / "t.txt"), *args])


@CLI_SETTINGS
@given(st.sampled_from(["", "nowhere", "corpus.txt", "run", "run/checkpoints", "run/config.yaml"]))
def test_info_options(trained_run, where):
    accepted_or_one_line(["info", "-c", str(trained_run.parent / where)])
