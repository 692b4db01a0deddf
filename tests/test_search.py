"""Beam search and best-of-N: likelier text than one draw, judged by the model itself."""

import itertools

import pytest
from typer.testing import CliRunner

import charlstm
from charlstm.cli import app
from charlstm.generate.sample import draw_texts
from charlstm.generate.search import (
    BEAM_NO_REPEAT_NGRAM,
    beam_search,
    best_of,
    continuation_log_probs,
)
from charlstm.options import SampleSettings


@pytest.fixture(scope="module")
def model(trained_run):
    return charlstm.load(trained_run, "cpu")


@pytest.mark.parametrize("stop", [None, "."])
def test_one_beam_is_greedy_decoding(model, stop):
    for prime in ("the ", "a cat ", ""):
        greedy = model.sample(prime=prime, length=60, greedy=True, stop=stop)
        assert model.sample(prime=prime, length=60, beam=1, stop=stop) == greedy


def test_a_wider_beam_never_finds_less_likely_text(model):
    for prime in ("the ", "dog ", "a small "):
        # greedy under the same rule as the wider beams (no 16-gram twice)
        one = model.search(prime=prime, length=40, beam=1, no_repeat_ngram=BEAM_NO_REPEAT_NGRAM)
        for width in (2, 4, 8):
            wider = model.search(prime=prime, length=40, beam=width)
            assert wider.mean_log_prob >= one.mean_log_prob - 1e-9, (prime, width)


def test_a_beam_repeats_no_16_gram_unless_told(model):
    def repeats(text: str, n: int = BEAM_NO_REPEAT_NGRAM) -> bool:
        grams = [text[i : i + n] for i in range(len(text) - n + 1)]
        return len(set(grams)) < len(grams)

    guarded = model.search(prime="the ", length=300, beam=4).text
    plain = model.search(prime="the ", length=300, beam=4, no_repeat_ngram=0).text
    assert not repeats(guarded) and repeats(plain)  # this model's likeliest text is a loop
    assert model.search(prime="the ", length=300, beam=1).text == model.sample(
        prime="the ", length=300, greedy=True
    )  # a beam of one is plain greedy decoding


def test_a_beam_as_wide_as_all_prefixes_finds_the_likeliest_text(model):
    """With width V^(L-1) nothing is ever dropped: the beam's answer is the likeliest of
    all V^L continuations, scored one by one."""
    net, vocab = model.net, model.vocab
    length = 3
    found = beam_search(net, vocab, "the ", SampleSettings(length=length, beam=vocab.size**2))
    everything = [
        "".join(chars)
        for chars in itertools.product([chr(c) for c in vocab.code_points], repeat=length)
    ]
    scores = continuation_log_probs(net, vocab, "the ", everything)
    best = max(range(len(everything)), key=lambda i: scores[i][0])
    assert found.text == "the " + everything[best]
    assert found.log_prob == pytest.approx(scores[best][0], abs=1e-4)


def test_the_reported_log_probability_is_the_texts_own(model):
    # step by step and in one pass the float32 kernels differ in the last digits
    found = model.search(prime="the ", length=30, beam=3)
    ((log_prob, chars),) = continuation_log_probs(model.net, model.vocab, "the ", [found.text[4:]])
    assert found.log_prob == pytest.approx(log_prob, abs=1e-4) and found.chars == chars == 30


def test_best_of_returns_the_likeliest_of_its_draws(model):
    settings = SampleSettings(length=50, seed=5, temperature=1.0, best_of=8)
    chosen = best_of(model.net, model.vocab, "the ", settings)
    draws = draw_texts(model.net, model.vocab, "the ", SampleSettings(length=50, seed=5,
                     temperature=1.0, num_samples=8))  # fmt: skip
    scores = continuation_log_probs(model.net, model.vocab, "the ", [d[4:] for d in draws])
    bpcs = [-lp / n for lp, n in scores]
    assert chosen.text == draws[bpcs.index(min(bpcs))]
    assert len(set(draws)) > 1  # there was a choice to make


def test_the_command_line_prints_the_text_and_its_score(trained_run):
    result = CliRunner().invoke(app, ["sample", "-c", str(trained_run), "--prime", "the ",
                                      "--length", "30", "--beam", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the ")
    assert "bits per character" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--beam", "0"], "--beam must be >= 1 (got 0)"),
        (["--best-of", "0"], "--best-of must be >= 1 (got 0)"),
        (["--beam", "2", "--best-of", "3"], "--beam and --best-of are two searches"),
        (["--beam", "2", "--num-samples", "2"], "leave --num-samples at 1"),
    ],
)
def test_bad_search_options_are_one_line(trained_run, args, message):
    result = CliRunner().invoke(app, ["sample", "-c", str(trained_run), *args])
    assert result.exit_code == 1 and message in result.output
    assert len(result.output.strip().splitlines()) == 1
