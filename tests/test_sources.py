"""Corpora as people have them: repositories with binaries and ignore files, compressed
files and archives read as streams, JSON Lines / CSV / TSV / Parquet records, legacy
encodings. Each test asserts what was read (the exact text), what was passed over, and
what was said."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import re
import tarfile
import zipfile
from pathlib import Path

import pytest

from charlstm.config import DataConfig
from charlstm.data.corpus import load_corpus
from charlstm.errors import CorpusError

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))
PYC = b"\xa7\r\r\n\x00\x00\x00\x00" + b"\xe3\x00\x00\x00" * 20


def cfg(path, tmp_path, **kw) -> DataConfig:
    return DataConfig(path=str(path), cache_dir=str(tmp_path / "cache"), **kw)


def text_of(corpus) -> str:
    return corpus.vocab.decode(corpus.ids)


def skipped(corpus) -> dict[str, str]:
    return {s.name: s.reason for s in corpus.skipped}


IGNORE = "build/\n*.log\n__pycache__/\n"


@pytest.fixture
def repo(tmp_path) -> Path:
    """A small repository as one is found: code, a picture, compiled files, an archive,
    version control, an ignore file, a FIFO and a link loop."""
    root = tmp_path / "repo"
    (root / "src" / "__pycache__").mkdir(parents=True)
    (root / "build").mkdir()
    (root / ".git" / "objects").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('app')\n")
    (root / "src" / "util.py").write_text("x = 1\n")
    (root / "README.md").write_text("# repo\n")
    (root / "logo.png").write_bytes(PNG)
    (root / "src" / "__pycache__" / "app.cpython-311.pyc").write_bytes(PYC)
    (root / "build" / "out.txt").write_text("built\n")
    (root / "notes.log").write_text("log line\n")
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / ".git" / "objects" / "ab").write_bytes(b"x\x01" + b"\0" * 40)
    (root / ".gitignore").write_text(IGNORE)
    with zipfile.ZipFile(root / "bundle.zip", "w") as z:
        z.writestr("inner.txt", "zipped text\n")
    os.mkfifo(root / "pipe")
    os.symlink(root / "loop", root / "loop")
    return root


def test_a_repository_reads_its_text_and_passes_over_the_rest(repo, tmp_path):
    c = load_corpus(cfg(repo, tmp_path))
    # .git never read; build/, *.log and __pycache__/ ignored; the zip read as an archive;
    # the ignore file itself is text the repository holds
    assert text_of(c) == IGNORE + "# repo\nzipped text\nprint('app')\nx = 1\n"
    assert skipped(c) == {"logo.png": "binary", "pipe": "special", "loop": "broken-link"}
    lines = c.report()
    assert lines == [
        "passed over 3 file(s): 1 binary, 1 broken links or link loops, 1 not a regular "
        "file (logo.png, loop, pipe)"
    ]


def test_a_link_that_leaves_the_folder_is_passed_over_and_listed(repo, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("the key to everything\n")
    os.symlink(secret, repo / "src" / "innocent.py")
    os.symlink(repo / "README.md", repo / "src" / "readme_again.md")  # inside: read
    c = load_corpus(cfg(repo, tmp_path))
    assert "the key to everything" not in text_of(c)
    assert text_of(c).count("# repo\n") == 2
    assert skipped(c)["src/innocent.py"] == "outside"
    assert "1 links to files outside the folder" in c.report()[0]


def test_ignore_files_can_be_turned_off_and_exclude_drops_more(repo, tmp_path):
    c = load_corpus(cfg(repo, tmp_path, respect_ignore=False, exclude=("*.zip", "src/*.py")))
    assert text_of(c) == IGNORE + "# repo\nlog line\nbuilt\n"  # a folder's files, then its folders
    assert skipped(c)["src/__pycache__/app.cpython-311.pyc"] == "binary"


def test_a_deeper_ignore_file_wins_and_negation_re_includes(tmp_path):
    root = tmp_path / "r"
    (root / "sub").mkdir(parents=True)
    (root / ".gitignore").write_text("*.txt\n")
    (root / "sub" / ".ignore").write_text("!keep.txt\n")
    (root / "a.txt").write_text("A\n")
    (root / "sub" / "keep.txt").write_text("K\n")
    (root / "sub" / "drop.txt").write_text("D\n")
    (root / "b.py").write_text("B\n")
    assert text_of(load_corpus(cfg(root, tmp_path))) == "*.txt\nB\n!keep.txt\nK\n"
    (root / "sub" / ".ignore").unlink()  # the cache notices: keep.txt is ignored again
    assert text_of(load_corpus(cfg(root, tmp_path))) == "*.txt\nB\n"


def test_the_cache_follows_a_changed_ignore_file(repo, tmp_path):
    first = load_corpus(cfg(repo, tmp_path))
    (repo / ".gitignore").write_text("build/\n__pycache__/\n")  # *.log no longer ignored
    second = load_corpus(cfg(repo, tmp_path))
    assert "log line\n" in text_of(second) and "log line\n" not in text_of(first)
    assert second.key != first.key
    again = load_corpus(cfg(repo, tmp_path))  # from the cache: the same, and the same notes
    assert again.key == second.key and again.skipped == second.skipped


def test_a_fifo_named_as_data_path_is_one_line_not_a_hang(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(CorpusError, match="is not a regular file"):
        load_corpus(cfg(tmp_path / "pipe", tmp_path))


def test_a_binary_file_named_as_data_path_says_so(tmp_path):
    (tmp_path / "logo.png").write_bytes(PNG)
    with pytest.raises(CorpusError, match="logo.png: it holds NUL bytes: it looks binary"):
        load_corpus(cfg(tmp_path / "logo.png", tmp_path))
    assert len(load_corpus(cfg(tmp_path / "logo.png", tmp_path, vocab="byte")).ids) == len(PNG)


TEXT = "First line, naïve café.\nSecond line ✓\n" * 40

COMPRESSORS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: __import__("zstandard").ZstdCompressor().compress(data),
}


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_compressed_files_are_read_as_their_text(tmp_path, suffix):
    path = tmp_path / f"corpus.txt.{suffix}"
    path.write_bytes(COMPRESSORS[suffix](TEXT.encode()))
    c = load_corpus(cfg(path, tmp_path))
    assert text_of(c) == TEXT and len(c.ids) == len(TEXT)


def tar_bytes(members: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


MEMBERS = {
    "proj/a.py": b"A = 1\n",
    "proj/.git/config": b"[core]\n",
    "proj/img.png": PNG,
    "proj/docs/b.md": "B é\n".encode(),
}


@pytest.mark.parametrize(
    "name, mode, compress",
    [
        ("src.tar", "w", None),
        ("src.tar.gz", "w:gz", None),
        ("src.tgz", "w:gz", None),
        ("src.tar.bz2", "w:bz2", None),
        ("src.tar.xz", "w:xz", None),
        ("src.tar.zst", "w", "zst"),
    ],
)
def test_tar_archives_are_read_member_by_member(tmp_path, name, mode, compress):
    data = tar_bytes(MEMBERS, mode)
    if compress:
        data = COMPRESSORS[compress](data)
    (tmp_path / name).write_bytes(data)
    c = load_corpus(cfg(tmp_path / name, tmp_path))
    assert text_of(c) == "A = 1\nB é\n"  # archive order; .git/ left out; the image passed
    assert skipped(c) == {f"{name}:proj/img.png": "binary"}
    again = load_corpus(cfg(tmp_path / name, tmp_path, exclude=("docs/*", "*.md")))
    assert text_of(again) == "A = 1\n"


def test_a_zip_archive_in_a_folder_with_include(tmp_path):
    (tmp_path / "d").mkdir()
    with zipfile.ZipFile(tmp_path / "d" / "src.zip", "w") as z:
        z.writestr("pkg/x.py", "X\n")
        z.writestr("pkg/y.txt", "Y\n")
        z.writestr("pkg/inner.tar.gz", tar_bytes({"z.py": b"Z\n"}, "w:gz"))
    c = load_corpus(cfg(tmp_path / "d", tmp_path, include=("*.zip", "*.py")))
    assert text_of(c) == "X\n"
    c = load_corpus(cfg(tmp_path / "d", tmp_path))
    assert text_of(c) == "X\nY\n"
    assert skipped(c) == {"src.zip:pkg/inner.tar.gz": "nested"}


def write_jsonl(path: Path, records: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_json_lines_records_are_documents_joined_by_newlines(tmp_path):
    records = [{"id": i, "text": f'doc {i}: "quoted"\nsecond line'} for i in range(200)]
    records[7] = {"id": 7}  # missing text: counted and left out
    write_jsonl(tmp_path / "data.jsonl", records)
    c = load_corpus(cfg(tmp_path / "data.jsonl", tmp_path))
    expected = "".join(r["text"] + "\n" for r in records if "text" in r)
    assert text_of(c) == expected  # the text itself: no keys, quotes or \n escapes
    assert c.notes == ("left out 1 record(s) without text in the field (data.jsonl)",)


def test_records_name_their_columns_when_the_field_is_missing(tmp_path):
    write_jsonl(tmp_path / "d.jsonl", [{"body": "x", "title": "t"}] * 3)
    with pytest.raises(CorpusError, match=r"no 'text' column: set data.field .*body, title"):
        load_corpus(cfg(tmp_path / "d.jsonl", tmp_path))
    c = load_corpus(cfg(tmp_path / "d.jsonl", tmp_path, field="title"))
    assert text_of(c) == "t\nt\nt\n"


def test_too_many_bad_records_is_an_error(tmp_path):
    records = [{"text": "ok"}] * 50 + [{"text": 3}] * 5
    write_jsonl(tmp_path / "d.jsonl", records)
    with pytest.raises(CorpusError, match=r"5 of 55 records have no text in 'text'"):
        load_corpus(cfg(tmp_path / "d.jsonl", tmp_path))


def test_compressed_json_lines(tmp_path):
    data = "".join(json.dumps({"text": f"line {i}"}) + "\n" for i in range(10))
    (tmp_path / "d.jsonl.gz").write_bytes(gzip.compress(data.encode()))
    c = load_corpus(cfg(tmp_path / "d.jsonl.gz", tmp_path))
    assert text_of(c) == "".join(f"line {i}\n" for i in range(10))


def test_csv_and_tsv_records(tmp_path):
    (tmp_path / "d.csv").write_text('id,text\n1,"a, with comma"\n2,"two\nlines"\n3,plain\n')
    assert text_of(load_corpus(cfg(tmp_path / "d.csv", tmp_path))) == (
        "a, with comma\ntwo\nlines\nplain\n"
    )
    (tmp_path / "d.tsv").write_text("name\tbody\nx\tfirst\ny\tsecond\n")
    with pytest.raises(CorpusError, match=r"no 'text' column.*name, body"):
        load_corpus(cfg(tmp_path / "d.tsv", tmp_path))
    assert text_of(load_corpus(cfg(tmp_path / "d.tsv", tmp_path, field="body"))) == (
        "first\nsecond\n"
    )


def test_parquet_records_stream_by_row_group(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    texts = [f"row {i} ✓" for i in range(1000)]
    texts[3] = None  # a null: counted and left out
    table = pa.table({"id": list(range(1000)), "text": texts})
    pq.write_table(table, tmp_path / "d.parquet", row_group_size=100)
    c = load_corpus(cfg(tmp_path / "d.parquet", tmp_path))
    assert text_of(c) == "".join(t + "\n" for t in texts if t is not None)
    assert c.notes == ("left out 1 record(s) without text in the field (d.parquet)",)
    with pytest.raises(CorpusError, match="column 'id' holds int64, not text"):
        load_corpus(cfg(tmp_path / "d.parquet", tmp_path, field="id"))


@pytest.mark.parametrize("encoding", ["gbk", "utf-16", "latin-1"])
def test_legacy_encodings(tmp_path, encoding):
    text = {"gbk": "中文文本\n第二行\n", "utf-16": "naïve 中文\n", "latin-1": "café déjà\n"}[
        encoding
    ]
    (tmp_path / "a.txt").write_bytes((text * 5).encode(encoding))
    with pytest.raises(CorpusError, match="(not valid UTF-8|starts as UTF-16).* set data.encoding"):
        load_corpus(cfg(tmp_path / "a.txt", tmp_path))
    c = load_corpus(cfg(tmp_path / "a.txt", tmp_path, encoding=encoding))
    assert text_of(c) == text * 5


def test_an_unknown_encoding_is_a_config_error():
    from charlstm.errors import ConfigError

    with pytest.raises(ConfigError, match="data.encoding 'klingon' is not an encoding"):
        DataConfig(encoding="klingon")


def test_a_byte_order_mark_is_dropped_and_crlf_can_become_lf(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfline one\r\nline two\r\n")
    c = load_corpus(cfg(tmp_path / "a.txt", tmp_path))
    assert text_of(c) == "line one\r\nline two\r\n"  # keep: the default
    c = load_corpus(cfg(tmp_path / "a.txt", tmp_path, newlines="lf"))
    assert text_of(c) == "line one\nline two\n"


def test_crlf_split_across_reads_becomes_one_lf(tmp_path, monkeypatch):
    from charlstm.data import read

    monkeypatch.setattr(read, "CHUNK_BYTES", 5)  # "abcd\r" | "\nefg\r" | "\n..."
    (tmp_path / "a.txt").write_bytes(b"abcd\r\nefg\r\nhi\rj\n" * 3)
    c = load_corpus(cfg(tmp_path / "a.txt", tmp_path, newlines="lf"))
    assert text_of(c) == "abcd\nefg\nhi\nj\n" * 3


def test_a_corpus_without_newlines_trains_with_the_default_prime(tmp_path):
    from charlstm.training.trainer import Trainer
    from tests.conftest import quiet_console, small_config

    (tmp_path / "one.txt").write_text("abcab cabca bcabc " * 400)  # one long line
    cfg = small_config(tmp_path / "one.txt", tmp_path / "run", "train.max_steps=4",
                       "train.eval_every=4", "log.sample_length=20")  # fmt: skip
    trainer = Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True)
    trainer.run()
    assert trainer.data.sample_prime == "a"  # the corpus's first character
    strict = small_config(tmp_path / "one.txt", tmp_path / "run2", "log.sample_prime=\n")
    with pytest.raises(Exception, match="log.sample_prime has 1 character"):
        Trainer(strict, console=quiet_console(tmp_path / "log"), quiet=True)


def test_a_run_lists_the_files_it_passed_over(repo, tmp_path):
    from charlstm.training.trainer import Trainer
    from tests.conftest import small_config

    (repo / "src" / "more.py").write_text("def f():\n    return 1\n" * 300)
    cfg = small_config(repo, tmp_path / "run", "train.max_steps=2", "train.eval_every=2",
                       "train.batch_size=2", "train.bptt=8", "data.val_fraction=0.3")  # fmt: skip
    console = __import__("rich.console").console.Console(record=True, width=300)
    Trainer(cfg, console=console, quiet=True).run()
    said = console.export_text()
    assert "passed over 3 file(s): 1 binary" in said
    assert f"the files passed over are listed in {tmp_path / 'run' / 'skipped.txt'}" in said
    listed = (tmp_path / "run" / "skipped.txt").read_text().splitlines()
    assert sorted(listed) == ["binary\tlogo.png", "broken-link\tloop", "special\tpipe"]


def test_a_warm_start_finds_an_archive_without_reading_it(tmp_path, monkeypatch):
    from charlstm.data.read import Reader

    (tmp_path / "src.tar.xz").write_bytes(tar_bytes(MEMBERS, "w:xz"))
    first = load_corpus(cfg(tmp_path / "src.tar.xz", tmp_path))

    def unread(*_args, **_kwargs):
        raise AssertionError("read again")

    monkeypatch.setattr(Reader, "pieces", unread)
    again = load_corpus(cfg(tmp_path / "src.tar.xz", tmp_path))  # size and mtime match
    assert again.key == first.key and again.skipped == first.skipped
    os.utime(tmp_path / "src.tar.xz", (1, 1))  # touched: read once more
    with pytest.raises(AssertionError, match="read again"):
        load_corpus(cfg(tmp_path / "src.tar.xz", tmp_path))


def test_odd_names_and_encrypted_members_are_read_or_passed_over_never_a_traceback(tmp_path):
    """A file name that is not UTF-8 is read like any other (and named with its bytes
    escaped); an encrypted zip member is passed over and listed."""
    root = tmp_path / "odd"
    root.mkdir()
    (root / "plain.txt").write_text("plain\n")
    with open(os.path.join(os.fsencode(root), b"caf\xe9.txt"), "wb") as f:  # latin-1 name
        f.write(b"latin name\n")
    with open(os.path.join(os.fsencode(root), b"bin\xff.dat"), "wb") as f:
        f.write(PNG)
    with zipfile.ZipFile(root / "box.zip", "w") as z:
        z.writestr("locked.txt", "secret\n")
        z.writestr("open.txt", "open\n")
    # mark the first member encrypted (zipfile writes no encrypted member itself): the
    # flag bit in its local header and in its central directory entry
    data = bytearray((root / "box.zip").read_bytes())
    local, central = data.find(b"PK\x03\x04"), data.find(b"PK\x01\x02")
    data[local + 6] |= 0x1
    data[central + 8] |= 0x1
    (root / "box.zip").write_bytes(bytes(data))
    c = load_corpus(cfg(root, tmp_path))
    assert text_of(c) == "open\nlatin name\nplain\n"
    listed = skipped(c)
    assert listed["box.zip:locked.txt"] == "encrypted"
    assert [r for n, r in listed.items() if n.startswith("bin")] == ["binary"]
    line = c.report()[0]
    assert "1 encrypted archive members" in line and "bin\\xff.dat" in line


def test_an_over_long_record_is_passed_over_or_refused_never_read_whole(tmp_path, monkeypatch):
    """Records are read one at a time up to MAX_RECORD_CHARS: a longer JSON Lines record
    is read past in pieces and listed; a longer CSV line or field is one line."""
    from charlstm.data import records

    monkeypatch.setattr(records, "MAX_RECORD_CHARS", 1000)
    monkeypatch.setattr(records, "LINE_PIECE", 64)
    lines = ['{"text": "short one"}', '{"text": "' + "x" * 5000 + '"}', '{"text": "after"}']
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    c = load_corpus(cfg(tmp_path / "r.jsonl", tmp_path))
    assert text_of(c) == "short one\nafter\n"
    assert "left out 1 record(s) over 1,000 characters (r.jsonl)" in c.report()
    (tmp_path / "r.csv").write_text("text\nshort\n" + "y" * 5000 + "\nafter\n")
    with pytest.raises(CorpusError, match=r"r\.csv line 3 is longer than 1,000 characters"):
        load_corpus(cfg(tmp_path / "r.csv", tmp_path))
    quoted = 'text\nshort\n"' + "z\n" * 800 + '"\n'  # one field over many short lines
    (tmp_path / "q.csv").write_text(quoted)
    with pytest.raises(CorpusError, match="has a field longer than 1,000 characters"):
        load_corpus(cfg(tmp_path / "q.csv", tmp_path))


def test_a_large_zip_member_moves_the_progress_line(tmp_path, monkeypatch):
    """A member far larger than its zip: progress in the archive's bytes, in step with
    what is read of the member, and never a wild time left."""
    from rich.console import Console

    from charlstm import progress

    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    with zipfile.ZipFile(tmp_path / "big.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.txt", "all work and no play\n" * 1_500_000)  # 31.5 MB in ~60 KB
    shown = io.StringIO()
    load_corpus(cfg(tmp_path / "big.zip", tmp_path), Console(file=shown, width=200), quiet=True)
    lines = [line for line in shown.getvalue().splitlines() if line.startswith("reading corpus")]
    done = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in lines]
    assert len(done) >= 3 and done == sorted(done) and 0 < done[0] < done[-2] <= 100
    assert all("left ?" in line or re.search(r"left \d+:\d\d\b", line) for line in lines)


def test_listing_a_large_folder_shows_how_far_it_got(tmp_path, monkeypatch):
    from rich.console import Console

    from charlstm import progress

    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    for d in range(5):
        (tmp_path / "many" / f"d{d}").mkdir(parents=True)
        for f in range(20):
            (tmp_path / "many" / f"d{d}" / f"f{f}.txt").write_text(f"file {f}\n")
    shown = io.StringIO()
    load_corpus(cfg(tmp_path / "many", tmp_path), Console(file=shown, width=200), quiet=True)
    counts = [int(m) for m in re.findall(r"listing corpus: (\d+) files so far", shown.getvalue())]
    assert counts[-1] == 100 and counts == sorted(counts) and len(counts) >= 5
