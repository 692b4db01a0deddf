"""No input to the config loader or the sample options produces a traceback: each is
either accepted or rejected with a CharlstmError (one line at the command line)."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charlstm.checkpoint import load_for_inference
from charlstm.config import Config, all_keys
from charlstm.errors import CharlstmError
from charlstm.sample import SampleSettings, generate

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
    model, vocab, _, _ = load_for_inference(trained_run)
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
        s = SampleSettings(length, temperature, top_k, top_p, greedy, 0, num_samples, stop, unknown)
        return generate(model, vocab, prime, s)

    texts = accepted_or_config_error(run)
    if texts is not None:
        assert len(texts) == num_samples
