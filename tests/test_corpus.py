import numpy as np
import pytest

from charlstm.config import DataConfig
from charlstm.data import corpus as corpus_mod
from charlstm.data.corpus import list_corpus, load_corpus
from charlstm.errors import CorpusError


def cfg(path, tmp_path, **kw) -> DataConfig:
    return DataConfig(path=str(path), cache_dir=str(tmp_path / "cache"), **kw)


def test_file_encodes_and_decodes_back(tmp_path):
    text = "naïve café\nline two ✓\n" * 50
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    c = load_corpus(cfg(tmp_path / "a.txt", tmp_path))
    assert c.vocab.decode(c.ids) == text
    assert c.ids.dtype == np.uint8


def test_chunk_boundaries_inside_multibyte_characters(tmp_path, monkeypatch):
    from charlstm.data import read

    monkeypatch.setattr(corpus_mod, "CHUNK_BYTES", 7)
    monkeypatch.setattr(read, "CHUNK_BYTES", 7)  # reads that split most multi-byte characters
    text = "€uro 🙂 ünïcödé 你好\n" * 20
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    c = load_corpus(cfg(tmp_path / "a.txt", tmp_path))
    assert c.vocab.decode(c.ids) == text


def test_directory_sorted_recursive_and_filtered(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "b.py").write_text("B\n")
    (tmp_path / "d" / "a.py").write_text("A\n")
    (tmp_path / "d" / "sub" / "c.py").write_text("C\n")
    (tmp_path / "d" / "notes.md").write_text("M\n")
    c = load_corpus(cfg(tmp_path / "d", tmp_path, include=("*.py",)))
    assert c.vocab.decode(c.ids) == "A\nB\nC\n"
    assert c.num_files == 3
    with pytest.raises(CorpusError, match=r"no files matching \['\*.rs'\] in .*d"):
        list_corpus(DataConfig(path=str(tmp_path / "d"), include=("*.rs",)))


def test_python_stdlib_is_the_builtin_code_corpus():
    files = list_corpus(DataConfig(path="python-stdlib"))[0].files
    names = {f.name for f in files}
    assert {"os.py", "decoder.py", "textwrap.py"} <= names
    assert all(f.suffix == ".py" for f in files)
    assert not any("site-packages" in f.parts or "test" in f.parts for f in files)
    assert list_corpus(DataConfig(path="python-stdlib"))[0].files == files  # a fixed order


def test_cache_hit_skips_encoding(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("hello cache\n" * 100)
    first = load_corpus(cfg(tmp_path / "a.txt", tmp_path))

    def no_encoding(*_):
        raise AssertionError("encoded again despite the cache")

    monkeypatch.setattr(corpus_mod, "_encode", no_encoding)
    second = load_corpus(cfg(tmp_path / "a.txt", tmp_path))
    assert np.array_equal(first.ids, second.ids) and first.vocab == second.vocab
    # a change of content or of vocab mode is a different cache entry
    (tmp_path / "a.txt").write_text("hello cache!\n" * 100)
    with pytest.raises(AssertionError, match="encoded again"):
        load_corpus(cfg(tmp_path / "a.txt", tmp_path))


def test_contiguous_split(tmp_path):
    (tmp_path / "a.txt").write_text("".join(chr(97 + i % 26) for i in range(1000)))
    c = load_corpus(cfg(tmp_path / "a.txt", tmp_path))
    train, val = c.split(0.1)
    assert len(val) == 100 and len(train) == 900
    assert np.array_equal(np.concatenate([train, val]), c.ids)


def test_invalid_utf8_suggests_byte_mode_and_byte_mode_reads_it(tmp_path):
    (tmp_path / "bin.dat").write_bytes(b"abc\xff\xfedef" * 10)
    with pytest.raises(
        CorpusError,
        match=r"bin.dat is not valid UTF-8 \(byte 3\): set data.encoding .* or data.vocab=byte",
    ):
        load_corpus(cfg(tmp_path / "bin.dat", tmp_path))
    c = load_corpus(cfg(tmp_path / "bin.dat", tmp_path, vocab="byte"))
    assert c.vocab.size == 256 and bytes(c.ids.tolist()) == b"abc\xff\xfedef" * 10


def test_missing_and_empty_corpora(tmp_path):
    with pytest.raises(CorpusError, match="data.path not found: .*nothing.txt"):
        load_corpus(cfg(tmp_path / "nothing.txt", tmp_path))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(CorpusError, match="is empty"):
        load_corpus(cfg(tmp_path / "empty.txt", tmp_path))


def test_encoding_memory_stays_near_the_output_size(tmp_path):
    """A 20 MB corpus encodes without ever holding a per-character Python object."""
    import tracemalloc

    line = "def f(x):\n    return x * 2  # ünïcode\n"
    (tmp_path / "big.txt").write_text(line * (20_000_000 // len(line)))
    tracemalloc.start()
    c = load_corpus(cfg(tmp_path / "big.txt", tmp_path))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(c.ids) > 19_000_000
    assert peak < 4 * len(c.ids) + 120_000_000  # the array plus a few chunk buffers


def test_unchanged_files_are_found_by_fingerprint_without_reading_them(tmp_path, monkeypatch):
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"{i}.txt").write_text(f"file {i} ünïcode\n" * 50)
    first = load_corpus(cfg(tmp_path / "d", tmp_path))
    reads = []
    real = corpus_mod._symbol_chunks
    monkeypatch.setattr(corpus_mod, "_symbol_chunks", lambda *a: (reads.append(1), real(*a))[1])
    second = load_corpus(cfg(tmp_path / "d", tmp_path))
    assert reads == [] and second.key == first.key
    assert isinstance(second.ids, np.memmap) and np.array_equal(second.ids, first.ids)
    # touched, same content: read once more to find the key, but not encoded again
    import os

    os.utime(tmp_path / "d" / "1.txt", ns=(1, 1))
    third = load_corpus(cfg(tmp_path / "d", tmp_path))
    assert len(reads) == 1 and third.key == first.key
    # a changed file: a new key, encoded
    (tmp_path / "d" / "2.txt").write_text("changed\n")
    fourth = load_corpus(cfg(tmp_path / "d", tmp_path))
    assert len(reads) == 3 and fourth.key != first.key
    assert fourth.vocab.decode(fourth.ids).endswith("changed\n")


def test_many_small_files_decode_together_and_a_bad_one_is_named(tmp_path):
    (tmp_path / "d").mkdir()
    texts = ["é" * 3, "plain\n", "中文\n", "", "🙂 end\n"]
    for i, t in enumerate(texts):
        (tmp_path / "d" / f"{i}.txt").write_text(t, encoding="utf-8")
    c = load_corpus(cfg(tmp_path / "d", tmp_path))
    assert c.vocab.decode(c.ids) == "".join(texts)
    # a file cut inside a character, before one that starts with a continuation byte:
    # joined they would decode, alone each is invalid: both are passed over, by name
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "a.txt").write_bytes(b"ok \xe2\x82")
    (tmp_path / "e" / "b.txt").write_bytes(b"\xac fine\n")
    (tmp_path / "e" / "c.txt").write_bytes(b"good\n")
    c = load_corpus(cfg(tmp_path / "e", tmp_path))
    assert c.vocab.decode(c.ids) == "good\n"
    assert [(s.name, s.reason) for s in c.skipped] == [("a.txt", "not-text"), ("b.txt", "not-text")]
    # one file named as data.path is read or refused, never passed over
    with pytest.raises(CorpusError, match=r"a.txt is not valid UTF-8 \(byte 3\)"):
        load_corpus(cfg(tmp_path / "e" / "a.txt", tmp_path))


def test_a_stop_during_encoding_leaves_no_cache_entry(tmp_path, monkeypatch):
    import os
    import signal

    from charlstm.data import read
    from charlstm.interrupt import Interrupted, StopRequests

    monkeypatch.setattr(corpus_mod, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(read, "CHUNK_BYTES", 1000)
    (tmp_path / "a.txt").write_text("some text to encode\n" * 5000)
    real = corpus_mod._symbol_chunks

    def signal_midway(reader, digest=None):
        for n, chunk in enumerate(real(reader, digest)):
            if n == 20 and digest is None:  # in the second pass, with the file half written
                os.kill(os.getpid(), signal.SIGINT)
            yield chunk

    monkeypatch.setattr(corpus_mod, "_symbol_chunks", signal_midway)
    with StopRequests(), pytest.raises(Interrupted, match="SIGINT: encoding corpus stopped"):
        load_corpus(cfg(tmp_path / "a.txt", tmp_path))
    assert list((tmp_path / "cache").iterdir()) == []  # no entry, no temporary file
    monkeypatch.setattr(corpus_mod, "_symbol_chunks", real)
    c = load_corpus(cfg(tmp_path / "a.txt", tmp_path))  # the next run encodes it whole
    assert c.vocab.decode(c.ids) == "some text to encode\n" * 5000


def test_content_keys_are_the_ones_earlier_releases_gave(tmp_path):
    """Checkpoints record their corpus's key; reading a plain corpus the default way
    must give the key it always had, or every existing run would refuse to resume."""
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("alpha\n", encoding="utf-8")
    (tmp_path / "d" / "sub" / "b.py").write_text('x = "é"\n', encoding="utf-8")
    (tmp_path / "big.txt").write_text("line of text ✓\n" * 700_000, encoding="utf-8")  # > 8 MB
    pinned = {  # written by the release before charlstm/sources
        ("d", "char"): "41d1d6cf948455a190cc9f6b37209279",
        ("d", "byte"): "3fbde7ac73daa71cc8639814fc45116b",
        ("big.txt", "char"): "70376fd731bcb78ab1b47d767254ae9b",
        ("big.txt", "byte"): "512ca6d0c4219154426a03bcb6aa4797",
    }
    for (name, vocab), key in pinned.items():
        assert load_corpus(cfg(tmp_path / name, tmp_path, vocab=vocab)).key == key, (name, vocab)
