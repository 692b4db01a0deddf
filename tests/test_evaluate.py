import math

import numpy as np
import pytest

from charlstm.checkpoint import load_for_inference
from charlstm.errors import CharlstmError
from charlstm.evaluate import evaluate_ids, evaluate_on, evaluate_text
from tests.conftest import make_text


@pytest.fixture(scope="module")
def loaded(trained_run):
    model, saved = load_for_inference(trained_run)
    return model, saved.vocab, saved.config, saved


def test_training_text_scores_far_below_uniform(loaded, trained_run):
    model, vocab, cfg, _ = loaded
    result = evaluate_text(model, vocab, (trained_run.parent / "corpus.txt").read_text())
    assert result.loss < 0.45 * math.log(vocab.size)
    assert result.bpc == pytest.approx(result.loss / math.log(2))
    assert result.perplexity == pytest.approx(math.exp(result.loss))


def test_result_does_not_depend_on_the_window(loaded):
    model, vocab, _, _ = loaded
    ids = vocab.encode(make_text(lines=150, seed=42))
    a = evaluate_ids(model, ids, streams=4, window=7)
    b = evaluate_ids(model, ids, streams=4, window=1000)
    assert a.chars == b.chars == len(ids) - 1
    assert a.loss == pytest.approx(b.loss, abs=1e-5)


def test_parallel_streams_with_burn_in_match_one_exact_pass(loaded):
    model, vocab, _, _ = loaded
    ids = vocab.encode(make_text(lines=300, seed=7))
    exact = evaluate_ids(model, ids, streams=1)
    fast = evaluate_ids(model, ids, streams=16)
    cold = evaluate_ids(model, ids, streams=16, burn_in=0)
    assert fast.loss == pytest.approx(exact.loss, rel=2e-3)
    assert abs(fast.loss - exact.loss) < abs(cold.loss - exact.loss)


def test_unknown_characters_are_counted_not_hidden(loaded):
    model, vocab, _, _ = loaded
    result = evaluate_text(model, vocab, "the cat sat. ZZ the dog ran. €\n" * 5)
    assert result.unknown == 15
    assert result.chars == len("the cat sat.  the dog ran. \n" * 5) - 1


def test_val_split_or_text_but_not_both(loaded, tmp_path):
    model, vocab, cfg, _ = loaded
    with pytest.raises(CharlstmError, match="exactly one of --text FILE or --split val"):
        evaluate_on(model, vocab, cfg)
    val = evaluate_on(model, vocab, cfg, split="val")
    assert val.chars > 100 and np.isfinite(val.loss)
