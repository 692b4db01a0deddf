"""No loops: the n-gram rule holds in every sample, the penalty is CTRL's rule, and a
model's looping greedy text stops looping."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

import charlstm
from charlstm.generate.repetition import repetition_for
from charlstm.generate.run import generate
from charlstm.generate.search import continuation_log_probs
from charlstm.options import SampleSettings
from tests.test_constraints import tiny


def repeated(text: str, n: int) -> float:
    """The share of the text's character n-grams that stand in it more than once."""
    grams = Counter(text[i : i + n] for i in range(len(text) - n + 1))
    return sum(c for c in grams.values() if c > 1) / max(1, sum(grams.values()))


def test_the_penalty_is_ctrls_rule_over_the_window():
    settings = SampleSettings(repetition_penalty=2.0, repetition_window=2)
    rule = repetition_for(settings, [0, 1, 2], rows=1)  # the window holds ids 1 and 2
    logits = torch.tensor([[1.0, 4.0, -3.0, 5.0]])
    assert rule.adjust(logits).tolist() == [[1.0, 2.0, -6.0, 5.0]]


@pytest.mark.parametrize("documents", [False, True])
def test_no_ngram_comes_twice_in_any_sample(documents):
    net, vocab = tiny(documents)
    kinds = [dict(num_samples=20, seed=1), dict(greedy=True), dict(beam=3), dict(best_of=4)]
    if documents:
        kinds[0] = dict(documents=20, seed=1)
    for kind in kinds:
        made = generate(net, vocab, SampleSettings(prime="ab", length=60, no_repeat_ngram=4,
                                                   **kind))  # fmt: skip
        for text in made.texts:
            assert repeated(text, 4) == 0.0, (kind, text)


def test_a_looping_greedy_text_stops_looping(trained_run):
    model = charlstm.load(trained_run)
    plain = model.sample(prime="the ", length=600, greedy=True)[4:]
    assert repeated(plain, 20) > 0.5  # the small model's greedy text is a loop
    unlooped = model.sample(prime="the ", length=600, greedy=True, no_repeat_ngram=12)[4:]
    assert repeated(unlooped, 20) == 0.0
    penalised = model.sample(prime="the ", length=600, greedy=True, repetition_penalty=3.0,
                             repetition_window=32)[4:]  # fmt: skip
    assert repeated(penalised, 20) < repeated(plain, 20)


def test_a_search_reports_the_models_own_odds_not_the_penalised_ones(trained_run):
    model = charlstm.load(trained_run)
    found = model.search(prime="the ", length=40, beam=3, no_repeat_ngram=6)
    ((own, chars),) = continuation_log_probs(model.net, model.vocab, "the ", [found.text[4:]])
    assert found.log_prob == pytest.approx(own, rel=1e-6) and found.chars == chars == 40
