"""What could come next: character odds are the model's softmax, and the word search
finds exactly what enumerating every string would."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import charlstm
from charlstm.cli import app
from charlstm.config import ModelConfig
from charlstm.data.vocab import Vocab
from charlstm.generate.context import prime_context
from charlstm.generate.suggest import next_chars, next_words
from charlstm.model import CharRNN
from charlstm.options import SampleSettings


def tiny(chars: str, documents: bool = False, seed: int = 0) -> tuple[CharRNN, Vocab]:
    """An untrained network over a few characters: its odds are spread out, which is
    what an exhaustive check wants."""
    vocab = Vocab.from_code_points(map(ord, chars))
    vocab = vocab.with_documents() if documents else vocab
    torch.manual_seed(seed)
    cfg = ModelConfig(embedding_dim=8, hidden_size=16, num_layers=1)
    return CharRNN(vocab.size, cfg).eval(), vocab


def log_prob_of(net, vocab, context: list[int], ids: list[int]) -> torch.Tensor:
    """ln P(ids | context), and the log-odds of what follows them."""
    with torch.no_grad():
        logits, _ = net(torch.tensor([context + ids]))
    logp = F.log_softmax(logits[0].double(), dim=-1)
    start = len(context) - 1
    picked = sum(float(logp[start + k, i]) for k, i in enumerate(ids))
    return picked, logp[-1]


def test_next_chars_are_the_softmax_of_the_logits():
    net, vocab = tiny("ab .\n")
    found = next_chars(net, vocab, SampleSettings(prime="ab"), 5)
    context = prime_context(vocab, "ab", "error")[1]  # a line start, then the prime
    _, after = log_prob_of(net, vocab, context[:-1], context[-1:])
    expected = sorted(((vocab.decode([i]), math.exp(lp)) for i, lp in enumerate(after.tolist())),
                      key=lambda x: -x[1])  # fmt: skip
    # read in two calls (the prime, then its last character) against one: float32 rounding
    assert [(s.text, pytest.approx(s.prob, rel=1e-6)) for s in found] == expected
    assert sum(s.prob for s in found) == pytest.approx(1.0)


@pytest.mark.parametrize("prime", ["a ", "ab", ". "])
def test_next_words_equal_an_enumeration_of_every_string(prime):
    """Every string of up to 4 characters that is a word by the rule (spaces first unless
    the prime ends inside a word, then word characters), its probability times that of
    any character ending it: the likeliest six, as the search finds them."""
    net, vocab = tiny("ab .", seed=3)
    context = prime_context(vocab, prime, "error")[1]
    word, space = {vocab.id_of("a"), vocab.id_of("b")}, vocab.id_of(" ")
    inside = prime[-1] in "ab"
    brute: dict[str, float] = {}
    for length in range(1, 5):
        for ids in itertools.product(range(vocab.size), repeat=length):
            lead = 0 if inside else next((k for k, i in enumerate(ids) if i != space), length)
            rest = ids[lead:]
            if not rest or not all(i in word for i in rest):
                continue
            lp, after = log_prob_of(net, vocab, context, list(ids))
            ends = sum(math.exp(float(after[b])) for b in range(vocab.size) if b not in word)
            brute[vocab.decode(list(ids))] = math.exp(lp) * ends
    top = sorted(brute.items(), key=lambda kv: -kv[1])[:6]
    found = next_words(net, vocab, SampleSettings(prime=prime), 6, max_chars=4)
    assert [s.text for s in found] == [text for text, _ in top]
    # stepped one character at a time against one pass: float32 rounding apart
    assert [s.prob for s in found] == pytest.approx([p for _, p in top], rel=1e-6)


def test_a_document_model_suggests_whole_completions():
    net, vocab = tiny("ab", documents=True, seed=5)
    context = vocab.document_start() + vocab.encode("a").tolist()
    brute = {}
    for length in range(0, 5):
        for ids in itertools.product([vocab.id_of("a"), vocab.id_of("b")], repeat=length):
            lp, after = log_prob_of(net, vocab, context, list(ids))
            brute[vocab.decode(list(ids))] = math.exp(lp + float(after[vocab.end_id]))
    top = sorted(brute.items(), key=lambda kv: -kv[1])[:5]
    found = next_words(net, vocab, SampleSettings(prime="a"), 5, max_chars=4)
    assert [(s.text, s.ends) for s in found] == [(text, True) for text, _ in top]
    assert [s.prob for s in found] == pytest.approx([p for _, p in top], rel=1e-6)


def test_the_api_and_the_command_line_agree(trained_run):
    model = charlstm.load(trained_run)
    chars = model.next_chars("the ", 4)
    words = model.next_words("the ", 3)
    assert len(chars) == 4 and chars[0].prob >= chars[-1].prob and len(words) == 3
    result = CliRunner().invoke(app, ["suggest", "-c", str(trained_run), "--prime", "the ",
                                      "--chars", "4", "--words", "3", "--json"])  # fmt: skip
    shown = json.loads(result.output)
    assert [c["text"] for c in shown["chars"]] == [c.text for c in chars]
    assert [w["prob"] for w in shown["words"]] == pytest.approx([w.prob for w in words])
    result = CliRunner().invoke(app, ["suggest", "-c", str(trained_run), "--prime", "the "])
    assert result.exit_code == 0 and "next words after 'the ':" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--chars", "-1"], "--chars must be in 0..1000"),
        (["--words", "101"], "--words must be in 0..100"),
        (["--chars", "0", "--words", "0"], "give --chars N or --words N"),
        (["--label", "x"], "need a document model"),
        (["--prime", "Ω"], "not in the model's vocabulary"),
    ],
)
def test_bad_suggest_options_are_one_line(trained_run, args, message):
    result = CliRunner().invoke(app, ["suggest", "-c", str(trained_run), *args])
    assert result.exit_code == 1 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_byte_model_suggests_whole_characters_once_each():
    """Its next "characters" are UTF-8 sequences read to their last byte (never a lone
    lead byte shown as U+FFFD), each once, with the product of its bytes' odds."""
    from charlstm.config import ModelConfig

    vocab = Vocab.bytes()
    torch.manual_seed(4)
    net = CharRNN(vocab.size, ModelConfig(embedding_dim=8, hidden_size=16, num_layers=1)).eval()
    with torch.no_grad():  # make a few multi-byte characters likely: é (C3 A9), € (E2 82 AC)
        net.decoder.bias[0xC3] += 6
        net.decoder.bias[0xE2] += 6
        net.decoder.bias[0xA9] += 3
    found = next_chars(net, vocab, SampleSettings(prime="ab"), 40)
    texts = [s.text for s in found]
    assert all(len(t) == 1 and t != "\ufffd" for t in texts), texts
    assert len(set(texts)) == len(texts) and "é" in texts
    probs = [s.prob for s in found]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-9
    context = prime_context(vocab, "ab", "error")[1]
    _, after = log_prob_of(net, vocab, context[:-1], context[-1:])
    for s in found:  # an ASCII character's odds are its byte's
        if ord(s.text) < 0x80:
            assert s.prob == pytest.approx(math.exp(float(after[ord(s.text)])), rel=1e-6)
    for s in next_words(net, vocab, SampleSettings(prime="x "), 8, max_chars=4):
        assert "\ufffd" not in s.text, s.text


def test_a_lone_surrogate_in_the_vocabulary_is_written_not_a_traceback(tmp_path):
    """A vocabulary may hold a lone surrogate (a JSON corpus can): `suggest --json`
    writes it as JSON's escape, plain output writes it escaped, neither a traceback."""
    import json as json_module

    from charlstm.checkpoint import Checkpoint, write_safetensors
    from charlstm.config import Config

    vocab = Vocab.from_code_points([10, 32, ord("a"), ord("b"), 0xD800])
    torch.manual_seed(0)
    cfg = Config.from_dict({}, ["model.embedding_dim=8", "model.hidden_size=16",
                                "model.num_layers=1"])  # fmt: skip
    net = CharRNN(vocab.size, cfg.model)
    with torch.no_grad():
        net.decoder.bias[vocab.id_of("\ud800")] += 8  # the likeliest next character
    write_safetensors(tmp_path / "m", Checkpoint(cfg, vocab, net.state_dict()))
    result = CliRunner().invoke(app, ["suggest", "-c", str(tmp_path / "m"), "--prime", "ab",
                                      "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json_module.loads(result.stdout)["chars"][0]["text"] == "\ud800"
    plain = CliRunner().invoke(app, ["sample", "-c", str(tmp_path / "m"), "--prime", "ab",
                                     "--greedy", "--length", "3"])  # fmt: skip
    assert plain.exit_code == 0 and "\\ud800" in plain.stdout, plain.output
