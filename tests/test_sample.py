import numpy as np
import pytest
import torch

from charlstm.checkpoint import load_for_inference
from charlstm.errors import CharlstmError, VocabError
from charlstm.generate.sample import Sampler, draw_rows, draw_texts
from charlstm.options import SampleSettings
from tests.conftest import quiet_console, small_config


@pytest.fixture(scope="module")
def model_and_vocab(trained_run):
    model, saved = load_for_inference(trained_run)
    vocab = saved.vocab
    return model, vocab


def test_greedy_is_deterministic_and_starts_with_the_prime(model_and_vocab):
    model, vocab = model_and_vocab
    s = SampleSettings(length=80, greedy=True)
    first = draw_texts(model, vocab, "the cat", s)[0]
    assert first == draw_texts(model, vocab, "the cat", s)[0]
    assert first.startswith("the cat") and len(first) == len("the cat") + 80


def test_seed_fixes_the_text(model_and_vocab):
    model, vocab = model_and_vocab
    a, b, c = (
        draw_texts(model, vocab, "a ", SampleSettings(length=100, temperature=1.0, seed=seed))[0]
        for seed in (5, 5, 6)
    )
    assert a == b and a != c


def test_top_k_one_and_tiny_top_p_equal_greedy(model_and_vocab):
    model, vocab = model_and_vocab
    greedy = draw_texts(model, vocab, "the ", SampleSettings(length=60, greedy=True))[0]
    assert draw_texts(model, vocab, "the ", SampleSettings(length=60, top_k=1, seed=3))[0] == greedy
    assert (
        draw_texts(model, vocab, "the ", SampleSettings(length=60, top_p=1e-6, seed=4))[0] == greedy
    )


def test_learned_text_looks_like_the_corpus(model_and_vocab):
    model, vocab = model_and_vocab
    text = draw_texts(model, vocab, "the ", SampleSettings(length=300, temperature=0.5, seed=0))[0]
    words = text.replace(".", " ").split()
    known = {
        "the",
        "a",
        "cat",
        "dog",
        "sat",
        "ran",
        "on",
        "under",
        "mat",
        "log",
        "big",
        "small",
        "red",
        "blue",
        "and",
        "then",
    }
    assert sum(w in known for w in words) >= 0.8 * len(words)


def test_unknown_prime_characters_error_or_skip(model_and_vocab):
    model, vocab = model_and_vocab
    with pytest.raises(VocabError, match=r"not in the model's vocabulary: 'Z', '€'"):
        draw_texts(model, vocab, "the Z€ cat", SampleSettings(length=5))
    skipping = SampleSettings(length=5, unknown="skip", seed=1)
    text = draw_texts(model, vocab, "the Z€ cat", skipping)[0]
    assert text.startswith("the  cat")


def test_stop_string_ends_the_sample_and_streaming_matches(model_and_vocab):
    model, vocab = model_and_vocab
    pieces = []
    text = draw_texts(
        model,
        vocab,
        "the",
        SampleSettings(length=500, seed=2, stop="."),
        on_text=lambda i, p: pieces.append(p),
    )[0]
    assert "".join(pieces) == text
    assert "." not in text and len(text) < 500


def test_no_prime_and_batches_of_samples(model_and_vocab):
    model, vocab = model_and_vocab
    texts = draw_texts(
        model, vocab, "", SampleSettings(length=50, num_samples=4, seed=9, temperature=1.0)
    )
    assert len(texts) == 4 and all(len(t) == 50 for t in texts)
    assert len(set(texts)) > 1


def test_low_temperature_cannot_overflow():
    logits = torch.tensor([[1000.0, 999.0, -1000.0]])
    for t in (1e-4, 1e-300, 5e-324):
        assert Sampler(SampleSettings(temperature=t, seed=0))(logits).tolist() == [0]


def test_draws_follow_the_distribution_and_its_cuts():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]] * 20000).log()
    freq = (
        np.bincount(Sampler(SampleSettings(temperature=1.0, seed=1))(logits), minlength=4) / 20000
    )
    assert np.allclose(freq, [0.5, 0.3, 0.15, 0.05], atol=0.015)
    hot = np.bincount(Sampler(SampleSettings(temperature=2.0, seed=2))(logits), minlength=4) / 20000
    assert np.allclose(
        hot, np.sqrt([0.5, 0.3, 0.15, 0.05]) / np.sqrt([0.5, 0.3, 0.15, 0.05]).sum(), atol=0.015
    )
    top2 = (
        np.bincount(Sampler(SampleSettings(top_k=2, temperature=1.0, seed=3))(logits), minlength=4)
        / 20000
    )
    assert np.allclose(top2, [0.625, 0.375, 0, 0], atol=0.015)
    nucleus = Sampler(SampleSettings(top_p=0.85, temperature=1.0, seed=4))(
        logits
    )  # 0.5 + 0.3 < 0.85: keeps 3
    assert set(nucleus.tolist()) == {0, 1, 2}
    # top-p reads the mass at the sampling temperature: 0.8 for the first two at T = 1,
    # 0.67 at T = 2, so a cut at 0.7 keeps two ids there and three here
    assert set(Sampler(SampleSettings(top_p=0.7, temperature=1.0, seed=5))(logits).tolist()) == {
        0,
        1,
    }
    flat = Sampler(SampleSettings(top_p=0.7, temperature=2.0, seed=5))(logits)
    assert set(flat.tolist()) == {0, 1, 2}
    uniform = Sampler(SampleSettings(temperature=1e308, seed=6))(logits)  # no overflow, no bias
    assert np.allclose(np.bincount(uniform, minlength=4) / 20000, 0.25, atol=0.015)


def test_rows_drawn_together_are_each_what_their_sampler_draws_alone():
    # continuous batching's step: plain rows at several temperatures, greedy, top-k and
    # top-p side by side, each with its own seed, over enough steps to cross a noise block
    kinds = [dict(temperature=1.0), dict(temperature=0.5), dict(greedy=True),
             dict(top_k=5, temperature=1.0), dict(top_p=0.9, temperature=0.8),
             dict(temperature=2.0), dict(temperature=1.0)]  # fmt: skip
    settings = [SampleSettings(seed=100 + i, **kw) for i, kw in enumerate(kinds)]
    together = [Sampler(s) for s in settings]
    alone = [Sampler(s) for s in settings]
    plain_only = [Sampler(s) for s in settings if not s.greedy and s.top_k is s.top_p is None]
    plain_alone = [Sampler(s) for s in settings if not s.greedy and s.top_k is s.top_p is None]
    torch.manual_seed(0)
    for _ in range(300):
        logits = torch.randn(len(settings), 1, 40) * 3
        drawn = draw_rows(logits, together)
        assert drawn.shape == (len(settings), 1)
        for i, sampler in enumerate(alone):
            assert drawn[i].item() == sampler(logits[i : i + 1]).item()
        plain = logits[[0, 1, 5, 6]]
        assert draw_rows(plain, plain_only)[:, 0].tolist() == [
            s(plain[i : i + 1]).item() for i, s in enumerate(plain_alone)
        ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0}, "^temperature must be > 0"),
        ({"top_p": 1.5}, r"^top_p must be in \(0, 1\]"),
        ({"top_p": 0}, r"^top_p must be in \(0, 1\]"),
        ({"top_k": 0}, "^top_k must be >= 1"),
        ({"num_samples": 0}, "^num_samples must be >= 1"),
        ({"unknown": "drop"}, "^unknown must be"),
    ],
)
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(CharlstmError, match=message):
        SampleSettings(**kwargs)


def test_byte_model_prints_multibyte_characters_whole(tmp_path):

    from charlstm.training.trainer import Trainer

    corpus = tmp_path / "u.txt"
    corpus.write_text("é🙂€ ü你\n" * 400, encoding="utf-8")
    cfg = small_config(corpus, tmp_path / "run", "data.vocab=byte", "train.max_steps=300")
    Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True).run()
    model, saved = load_for_inference(tmp_path / "run")
    vocab = saved.vocab
    pieces = []
    text = draw_texts(
        model,
        vocab,
        "é",
        SampleSettings(length=60, greedy=True),
        on_text=lambda i, p: pieces.append(p),
    )[0]
    assert "🙂€ ü你" in text and "\ufffd" not in text
    assert all("\ufffd" not in p for p in pieces) and "".join(pieces) == text


def test_a_prime_file_or_standard_input_is_the_prime(trained_run, tmp_path):
    from typer.testing import CliRunner

    from charlstm.cli import app

    prime = "the cat sat on the mat. " * 40
    (tmp_path / "prime.txt").write_text(prime, encoding="utf-8")
    args = ["sample", "-c", str(trained_run), "--length", "40", "--seed", "3"]
    given = CliRunner().invoke(app, [*args, "--prime", prime])
    from_file = CliRunner().invoke(app, [*args, "--prime-file", str(tmp_path / "prime.txt")])
    piped = CliRunner().invoke(app, [*args, "--prime-file", "-"], input=prime)
    assert given.exit_code == 0 and given.stdout == from_file.stdout == piped.stdout
    (tmp_path / "bad.txt").write_bytes(b"the \xff")
    for extra, message in [
        (["--prime", "a", "--prime-file", str(tmp_path / "prime.txt")], "not both"),
        (["--prime-file", str(tmp_path / "none.txt")], "No such file"),
        (["--prime-file", str(tmp_path / "bad.txt")], "is not valid UTF-8 (byte 4)"),
    ]:
        result = CliRunner().invoke(app, [*args, *extra])
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_long_prime_is_read_in_windows_with_the_same_text(trained_run, monkeypatch):
    """Warming up reads WARM_WINDOW characters at a time, the state carried: memory is
    the state's and one window's, and the text is what one pass would give."""
    import charlstm
    from charlstm.generate import context

    model = charlstm.load(trained_run)
    prime = "the cat sat on the mat. " * 20
    whole = model.sample(prime=prime, length=80, seed=5)
    read: list[int] = []
    real = model.net.forward

    def counting(ids, state=None):
        read.append(ids.shape[1])
        return real(ids, state)

    monkeypatch.setattr(context, "WARM_WINDOW", 64)
    monkeypatch.setattr(model.net, "forward", counting)
    assert model.sample(prime=prime, length=80, seed=5) == whole
    # the line start and the prime, all but the first step's input
    assert max(read) == 64 and sum(n for n in read if n > 1) == len(prime)
