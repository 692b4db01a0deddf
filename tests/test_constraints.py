"""Constraints that always hold: every sample of every kind matches, nothing is thrown
away, and no constraint at all (or `.*`) leaves the text exactly as it was."""

from __future__ import annotations

import re

import pytest
import torch
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.config import ModelConfig
from charlstm.data.vocab import Vocab
from charlstm.errors import CharlstmError
from charlstm.generate.run import generate
from charlstm.model import CharRNN
from charlstm.options import SampleSettings

ALPHABET = "abcxyz .,\nAB"


def tiny(documents: bool) -> tuple[CharRNN, Vocab]:
    """An untrained network: it would write anything, so what holds is the constraint's."""
    vocab = Vocab.from_code_points(map(ord, ALPHABET))
    vocab = vocab.with_documents() if documents else vocab
    torch.manual_seed(0)
    return CharRNN(vocab.size, ModelConfig(embedding_dim=8, hidden_size=32)).eval(), vocab


CASES = [
    (dict(regex=r"[a-c]+ x{2,3}"), lambda t: re.fullmatch(r"[a-c]+ x{2,3}", t, re.S)),
    (dict(regex=r"(ab|ba)*\.", min_length=5),
     lambda t: re.fullmatch(r"(ab|ba)*\.", t) and len(t) >= 5),
    (dict(contains=["abc", "zz"]), lambda t: "abc" in t and "zz" in t),
    (dict(ends_with="A."), lambda t: t.endswith("A.")),
    (dict(allow="ax "), lambda t: set(t) <= set("ax ")),
    (dict(ban="abc\n"), lambda t: not set(t) & set("abc\n")),
    (dict(min_length=7, max_length=9, regex=r"[xyz]+"), lambda t: re.fullmatch("[xyz]{7,9}", t)),
    (dict(regex=r"B[a-z]*", contains=["y"], max_length=12),
     lambda t: re.fullmatch("B[a-z]*", t) and "y" in t and len(t) <= 12),
]  # fmt: skip


@pytest.mark.parametrize("documents", [False, True])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_every_sample_of_every_kind_holds(documents, case):
    net, vocab = tiny(documents)
    options, holds = CASES[case]
    kinds = [dict(num_samples=40, seed=1), dict(greedy=True), dict(beam=4), dict(best_of=6, seed=2)]
    if documents:
        kinds[0] = dict(documents=40, seed=1)
    for kind in kinds:
        made = generate(net, vocab, SampleSettings(length=24, **options, **kind))
        assert made.texts, kind
        for sample in made.samples:
            assert holds(sample.text), (kind, sample.text)
            if documents and "max_length" not in options:
                assert sample.ended, (kind, sample.text)  # a document ends at a whole match


@pytest.mark.parametrize("documents", [False, True])
def test_no_constraint_and_dot_star_draw_the_same_text(documents):
    net, vocab = tiny(documents)
    for kind in (dict(num_samples=8, seed=3), dict(beam=3), dict(best_of=4, seed=4)):
        plain = generate(net, vocab, SampleSettings(prime="a", length=40, **kind))
        dotted = generate(net, vocab, SampleSettings(prime="a", length=40, regex=".*", **kind))
        assert plain.texts == dotted.texts


def test_the_prime_is_part_of_the_match():
    net, vocab = tiny(False)
    made = generate(net, vocab, SampleSettings(prime="ab", regex=r"ab+ x", num_samples=20, seed=1))
    assert all(re.fullmatch(r"ab+ x", t) for t in made.texts)
    with pytest.raises(CharlstmError, match="the prime cannot begin a text that matches"):
        generate(net, vocab, SampleSettings(prime="x", regex=r"ab+"))


def test_allow_and_ban_rule_what_is_generated_not_the_prime():
    net, vocab = tiny(False)
    made = generate(net, vocab, SampleSettings(prime="ab c", ban=" ", num_samples=8, seed=2,
                                               length=40))  # fmt: skip
    assert all(t.startswith("ab c") and " " not in t[4:] for t in made.texts)
    made = generate(net, vocab, SampleSettings(prime="zz.", allow="ab", length=30, seed=3))
    assert all(t.startswith("zz.") and set(t[3:]) <= set("ab") for t in made.texts)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--regex", "(a|b)*a(a|b){13}"], "is too complex to follow (16,385 automaton states"),
        (
            [
                "--contains",
                "alpha",
                "--contains",
                "beta",
                "--contains",
                "gamma",
                "--contains",
                "delta",
                "--contains",
                "epsilon",
                "--contains",
                "zeta",
                "--contains",
                "eta",
                "--contains",
                "theta",
                "--contains",
                "iota",
                "--contains",
                "kappa",
            ],
            "is too complex to follow (more than 50,000 automaton states or 3 s",
        ),
        (["--regex", "x" * 5000], "the patterns have at most 4,096 characters"),
        (["--regex", "[Ω]+"], "no text of 0..500 characters over the model's alphabet"),
        (["--regex", "(a"], "is not a pattern charlstm can follow"),
        (["--regex", "a{5}", "--length", "3"], "no text of 0..3 characters"),
        (["--min-length", "9", "--length", "5"], "--min-length is more than"),
        (["--contains", ""], "--contains must not be empty"),
        (["--max-length", "0"], "--max-length must be >= 1"),
        (["--seed", str(2**64)], "--seed must be a whole number in 0.."),
        (["--repetition-penalty", "0.5"], "--repetition-penalty must be in 1..100"),
        (["--no-repeat-ngram", "-1"], "--no-repeat-ngram must be in 0..1000"),
        (["--frequency-penalty", "2.5"], "--frequency-penalty must be in -2..2"),
        (["--presence-penalty", "-3"], "--presence-penalty must be in -2..2"),
        (["--logit-bias", "e=5"], "--logit-bias maps character ids (whole numbers)"),
        (["--logit-bias", "3"], "--logit-bias maps character ids"),
        (["--logit-bias", "3=101"], "--logit-bias: an id >= 0 and a bias in -100..100"),
        (["--logit-bias", "99999=1"], "--logit-bias: 99999 is no character id of this model"),
    ],
)
def test_a_setting_that_cannot_hold_is_one_line(trained_run, args, message):
    result = CliRunner().invoke(app, ["sample", "-c", str(trained_run), *args])
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_command_line_and_the_server_request_take_the_constraints(trained_run):
    from charlstm.serve.protocol import SampleRequest

    result = CliRunner().invoke(app, ["sample", "-c", str(trained_run), "--regex", "[a-z ]+\\.",
                                      "--contains", "the", "--num-samples", "3", "--seed", "1",
                                      "--length", "60"])  # fmt: skip
    texts = result.stdout.strip().split("\n" + "-" * 40 + "\n")
    assert result.exit_code == 0 and len(texts) == 3
    assert all(re.fullmatch(r"[a-z ]+\.", t) and "the" in t for t in texts)
    request = SampleRequest(regex="[a-z]+", contains=["ab"], min_length=3)
    assert request.to_settings() == SampleSettings(regex="[a-z]+", contains=("ab",), min_length=3)


def test_a_stop_request_ends_an_automaton_being_built():
    """A server client that went away (or Ctrl-C, SIGTERM) stops the build at once, not
    when its bounds are reached; the next build of the same pattern starts afresh."""
    import threading

    from charlstm import interrupt

    net, vocab = tiny(False)
    gone = threading.Event()
    gone.set()
    settings = SampleSettings(contains=("abc", "bca", "cab", "xyz", "zyx", "axb", "bxa"))
    with interrupt.cancelled_by(gone), pytest.raises(interrupt.Interrupted, match="nobody is"):
        generate(net, vocab, settings)
    made = generate(net, vocab, settings).texts[0]  # built whole this time
    assert all(word in made for word in settings.contains)
