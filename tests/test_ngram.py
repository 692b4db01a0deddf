"""The baseline to beat: interpolated Kneser-Ney character n-grams, held to the rules'
own arithmetic, and `charlstm eval --baseline` beside the network."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict

import numpy as np
import pytest
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.inspect.ngram import KneserNey, breakdown, char_class

TEXT = "the cat sat on the mat. the dog sat on the log. a cat and a dog.\n" * 3 + "zebra"


def ids_of(text: str) -> tuple[np.ndarray, int]:
    alphabet = sorted(set(TEXT))
    return np.array([alphabet.index(c) for c in text]), len(alphabet)


def reference(train: list[int], order: int, vocab: int):
    """Interpolated Kneser-Ney written out from its definition with dicts (slow, plain):
    p(history, w)."""
    counts = [Counter() for _ in range(order + 1)]
    for k in range(1, order + 1):
        for t in range(len(train) - k + 1):
            counts[k][tuple(train[t : t + k])] += 1
    a = [Counter() for _ in range(order + 1)]
    a[order] = counts[order]
    for k in range(1, order):  # continuation counts: distinct left neighbours
        a[k] = Counter(gram[1:] for gram in counts[k + 1])
    totals = [defaultdict(int) for _ in range(order + 1)]
    kinds = [defaultdict(int) for _ in range(order + 1)]
    discounts = [0.5] * (order + 1)
    for k in range(1, order + 1):
        for gram, value in a[k].items():
            totals[k][gram[:-1]] += value
            kinds[k][gram[:-1]] += 1
        n1 = sum(1 for v in a[k].values() if v == 1)
        n2 = sum(1 for v in a[k].values() if v == 2)
        discounts[k] = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5

    def p(k: int, h: tuple, w: int) -> float:
        if k == 0:
            return 1 / vocab
        lower = p(k - 1, h[1:], w)
        if totals[k][h] == 0:
            return lower
        d = discounts[k]
        return max(a[k][h + (w,)] - d, 0) / totals[k][h] + d * kinds[k][h] / totals[k][h] * lower

    def probability(history: list[int], w: int) -> float:
        k = min(order, len(history) + 1)  # a short history: the orders it has
        return p(k, tuple(history[len(history) - k + 1 :]), w)

    return probability


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_each_probability_is_the_definitions_and_they_sum_to_one(order):
    ids, vocab = ids_of(TEXT)
    model = KneserNey(ids, order, vocab)
    probability = reference(ids.tolist(), order, vocab)
    for context in ("the c", "a do", "zzz", "the", "t", "zt"):
        history = ids_of(context)[0].tolist()
        probs = []
        for w in range(vocab):
            got = math.exp(model.log_probs(np.array([*history, w]))[-1])
            assert got == pytest.approx(probability(history, w)), (context, w)
            probs.append(got)
        assert sum(probs) == pytest.approx(1.0)


def test_higher_orders_predict_a_structured_text_better():
    ids, vocab = ids_of(TEXT)
    held = ids_of("the cat sat on the log. a dog and a cat.\n")[0]
    losses = [-KneserNey(ids, n, vocab).log_probs(held).mean() for n in (1, 2, 3, 4)]
    assert losses[1] < losses[0] and min(losses[2:]) < 0.6 * losses[0]


def test_the_breakdown_groups_by_class_and_distance():
    text = 'ab\n(c "d"\n'
    network = np.arange(len(text) - 1, dtype=float)
    ngram = np.full(len(text) - 1, 4.0)
    found = breakdown(list(text), network, ngram)
    by_class = {row["group"]: row for row in found["character"]}
    assert by_class["newline"]["chars"] == 2 and by_class["quote"]["chars"] == 2
    assert by_class["letter"]["network"] == np.mean([0, 3, 6])  # b, c, d
    assert char_class("(") == "bracket" and char_class("7") == "digit"
    since_newline = {row["group"]: row["chars"] for row in found["since a newline"]}
    assert since_newline == {"none before": 2, "1": 1, "2-3": 2, "4-7": 4}
    assert sum(r["chars"] for r in found["since a quote"]) == len(text) - 1


def test_eval_sets_the_baseline_beside_the_network(trained_run):
    said = CliRunner().invoke(app, ["eval", "-c", str(trained_run), "--split", "val",
                                    "--baseline", "ngram:4", "--json"])  # fmt: skip
    assert said.exit_code == 0, said.output
    numbers = json.loads(said.stdout)
    base = numbers["baseline"]
    assert base["order"] == 4 and 0 < base["ngram_loss"] < math.log(30)
    # the network's loss in one pass from the start is eval's (which walks streams)
    assert base["network_loss"] == pytest.approx(numbers["loss"], rel=0.05)
    assert {"character", "since a newline", "since a bracket opened", "since a quote"} == set(
        base["where"]
    )
    assert sum(r["chars"] for r in base["where"]["character"]) == base["chars"]
    shown = CliRunner().invoke(app, ["eval", "-c", str(trained_run), "--split", "val",
                                     "--baseline", "ngram:3"])  # fmt: skip
    assert shown.exit_code == 0 and "baseline: a 3-gram, interpolated Kneser-Ney" in shown.stdout
    assert "since a newline" in shown.stdout and "network lower on" in shown.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--baseline", "ngram"], "--baseline takes ngram:N"),
        (["--baseline", "kenlm:3"], "--baseline takes ngram:N"),
        (["--baseline", "ngram:0"], "--baseline ngram:N: N must be in 1.."),
        (["--baseline", "ngram:40"], "--baseline ngram:N: N must be in 1.."),
        (["--baseline", "ngram:3", "--task", "counter"], "--baseline compares on a text"),
    ],
)
def test_bad_baselines_are_one_line(trained_run, args, message):
    said = CliRunner().invoke(app, ["eval", "-c", str(trained_run), "--split", "val", *args])
    assert said.exit_code == 1 and message in said.stderr
    assert len(said.stderr.strip().splitlines()) == 1
