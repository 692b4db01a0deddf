"""Corpora: find the files, encode them once into a compact id array, cache it, split it.

Encoding streams the files in chunks and writes the ids straight to the cache file, so
memory stays near one chunk whatever the corpus size: a first pass reads every byte to
find the vocabulary, the length and the content key; a second writes the ids in the
smallest dtype (one byte per character for vocabularies up to 256). Later runs find the
entry by the files' fingerprint without reading them, and memory-map it: training reads
its windows from the map, so a corpus never has to fit in RAM (see corpus_cache.py).
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import os
import sysconfig
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from charlstm import corpus_cache as cache
from charlstm import tasks
from charlstm.config import DataConfig
from charlstm.errors import CorpusError
from charlstm.progress import Work
from charlstm.vocab import Vocab

STDLIB = "python-stdlib"
# Bytes decoded at a time (small files are read together up to this much): memory for
# encoding is a few times this, whatever the corpus size.
CHUNK_BYTES = 8 << 20
# Folders of the standard library that are not its own code: installed packages and
# the test suites (which hold deliberately broken files).
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True)
class Corpus:
    ids: np.ndarray  # one id per character (or byte), compact dtype; memory-mapped
    vocab: Vocab
    source: str  # what was read, for logs
    num_files: int
    key: str  # hash of the content and vocab mode: checkpoints record what they saw

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Contiguous split: the last `val_fraction` of the text is validation."""
        n_val = max(2, int(len(self.ids) * val_fraction))
        if len(self.ids) - n_val < 2:
            raise CorpusError(
                f"corpus {self.source} has only {len(self.ids)} characters: too short to split"
            )
        return self.ids[:-n_val], self.ids[-n_val:]


def load_corpus(cfg: DataConfig, console: Console | None = None, quiet: bool = False) -> Corpus:
    """The corpus `cfg` names, from the cache when its files did not change."""
    if cfg.path.startswith(tasks.PREFIX):  # generated on the spot: nothing to cache
        name = cfg.path[len(tasks.PREFIX) :]
        text = tasks.corpus_text(
            name, cfg.task_count, cfg.task_seed, cfg.task_n_min, cfg.task_n_max
        )
        vocab = (
            Vocab.bytes() if cfg.vocab == "byte" else Vocab.from_code_points(map(ord, set(text)))
        )
        key = hashlib.sha256(f"{cfg.vocab}\0{text}".encode()).hexdigest()[:32]
        return Corpus(vocab.encode(text), vocab, cfg.path, 0, key)
    files = find_files(cfg.path, cfg.include)
    folder = cache.cache_dir(cfg)
    fp = cache.fingerprint(files, cfg.vocab)
    key = cache.key_for(folder, fp)
    entry = cache.read_entry(folder, key) if key else None
    if entry is None:
        key, entry = _encode(files, cfg, folder, Encoding(files, console, quiet))
        cache.remember_key(folder, fp, key)
    ids, vocab = entry
    return Corpus(ids, vocab, cfg.path, len(files), key)


def changed_corpus(path: str, what: str) -> str:
    """The one line for a corpus that is no longer the text a checkpoint trained on."""
    return (
        f"data.path {path} is not the text this checkpoint was trained on (its content "
        f"changed since): cannot {what}; to train on new text, start a new run from "
        "these weights (fine-tuning)"
    )


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def find_files(path: str, include: tuple[str, ...] = ()) -> list[Path]:
    """The files a data.path names, in a fixed (sorted) order."""
    if path == STDLIB:
        root, patterns, skip = stdlib_root(), include or ("*.py",), STDLIB_SKIP
    else:
        root, patterns, skip = Path(path).expanduser(), include, set()
        if root.is_file():
            return [root]
        if not root.is_dir():
            raise CorpusError(
                f"data.path not found: {path} (a text file, a directory, or {STDLIB})"
            )
    files = []
    # Plain strings while walking: a corpus may have hundreds of thousands of files, and
    # building paths piece by piece would cost more than finding them.
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        prefix = os.path.relpath(dirpath, root).replace(os.sep, "/") + "/"
        for name in sorted(filenames):
            if not patterns or any(
                fnmatch.fnmatch(name, p) or fnmatch.fnmatch(prefix.removeprefix("./") + name, p)
                for p in patterns
            ):
                files.append(Path(dirpath, name))
    if not files:
        wanted = f" matching {list(patterns)}" if patterns else ""
        raise CorpusError(f"no files{wanted} in {root} (check data.path and data.include)")
    return files


@dataclass
class Encoding:
    """What an encode reports as it goes: the files, and where to show progress."""

    files: list[Path]
    console: Console | None
    quiet: bool

    def work(self, what: str) -> Work:
        total = sum(f.stat().st_size for f in self.files)
        return Work(what, total, "bytes", self.console, self.quiet)


def _encode(
    files: list[Path], cfg: DataConfig, folder: Path, shown: Encoding
) -> tuple[str, tuple[np.ndarray, Vocab]]:
    """Pass 1 finds the content key, vocabulary and length; pass 2 (skipped when an entry
    with that key exists: files touched, content unchanged) writes the ids file."""
    digest = hashlib.sha256(f"charlstm-corpus/{cache.CACHE_VERSION}/{cfg.vocab}".encode())
    seen = np.zeros(0x110000, dtype=bool) if cfg.vocab == "char" else None
    total = 0
    with shown.work("reading corpus") as work:
        for symbols, raw, done in _symbol_chunks(files, cfg.vocab, digest):
            if seen is not None:
                seen[symbols] = True
            total += len(symbols)
            work.advance(raw, files=done)
    if total == 0:
        raise CorpusError(f"corpus {cfg.path} is empty: give data.path a file with text in it")
    key = digest.hexdigest()[:32]
    entry = cache.read_entry(folder, key)
    if entry is not None:
        return key, entry
    vocab = Vocab.bytes() if seen is None else Vocab.from_code_points(np.flatnonzero(seen))
    table = np.zeros(max(vocab.code_points) + 1, dtype=vocab.dtype)
    table[list(vocab.code_points)] = np.arange(vocab.size)
    with shown.work("encoding corpus") as work:

        def ids() -> Iterator[np.ndarray]:
            for symbols, raw, done in _symbol_chunks(files, cfg.vocab):
                if seen is not None and not seen[symbols].all():  # edited since pass 1
                    raise CorpusError(f"corpus {cfg.path} changed while it was being encoded")
                yield table[symbols]
                work.advance(raw, files=done)

        return key, _write_entry(folder, key, vocab, total, ids())


def in_vocab(corpus: Corpus, vocab: Vocab, cfg: DataConfig) -> Corpus:
    """The corpus in the ids of `vocab`, a vocabulary holding all its characters (one
    grown for fine-tuning): mapped once, cached beside the corpus's own entry."""
    if vocab == corpus.vocab:
        return corpus
    if not set(corpus.vocab.code_points) <= set(vocab.code_points):
        raise CorpusError(changed_corpus(corpus.source, "use it with this checkpoint"))
    dtype = np.uint8 if vocab.mode == "byte" else np.uint32
    table = vocab.ids_of(np.asarray(corpus.vocab.code_points, dtype=dtype))
    if corpus.num_files == 0:  # generated in memory: mapped in memory
        return Corpus(table[corpus.ids], vocab, corpus.source, 0, corpus.key)
    folder = cache.cache_dir(cfg)
    name = f"{corpus.key}-" + hashlib.sha256(repr(vocab.code_points).encode()).hexdigest()[:16]
    entry = cache.read_entry(folder, name)
    if entry is None:
        chunks = (
            table[corpus.ids[i : i + CHUNK_BYTES]] for i in range(0, len(corpus.ids), CHUNK_BYTES)
        )
        entry = _write_entry(folder, name, vocab, len(corpus.ids), chunks)
    return Corpus(entry[0], vocab, corpus.source, corpus.num_files, corpus.key)


def _write_entry(
    folder: Path, name: str, vocab: Vocab, total: int, chunks: Iterator[np.ndarray]
) -> tuple[np.ndarray, Vocab]:
    """Write `total` ids, chunk by chunk, as the cache entry `name`; a stop or failure on
    the way leaves no half entry. Without a writable cache the ids go to a private
    temporary file, mapped and removed at once."""
    written = _new_ids_file(folder, name)
    try:
        with open(written, "wb") as f:
            np.lib.format.write_array_header_1_0(
                f,
                {
                    "descr": np.lib.format.dtype_to_descr(vocab.dtype),
                    "fortran_order": False,
                    "shape": (total,),
                },
            )
            written_ids = 0
            for ids in chunks:
                f.write(ids.astype(vocab.dtype, copy=False).tobytes())
                written_ids += len(ids)
        if written_ids != total:
            raise CorpusError(f"the corpus changed while it was being encoded ({name})")
        entry = None
        if written.parent == folder:
            cache.commit_entry(folder, name, written, total, vocab)
            entry = cache.read_entry(folder, name)
        if entry is None:  # no cache here: map the private file, which goes with its name
            entry = np.load(written, mmap_mode="r"), vocab
    finally:
        written.unlink(missing_ok=True)
    return entry


def _new_ids_file(folder: Path, key: str) -> Path:
    """A temporary file for the ids: in the cache folder, or the system's temp folder
    when the cache cannot be written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key}.npy.{os.getpid()}.tmp"  # ranks may encode at once
        path.touch()
        return path
    except OSError:
        handle, name = tempfile.mkstemp(suffix=".npy", prefix="charlstm-")
        os.close(handle)
        return Path(name)


def _symbol_chunks(
    files: list[Path], mode: str, digest: Any | None = None
) -> Iterator[tuple[np.ndarray, int, int]]:
    """(symbols, bytes read, files finished) chunk by chunk over all files, in order:
    UTF-8 code points decoded strictly, or bytes. Small files are decoded together, as
    one call per file would cost more than decoding them."""
    batch: list[tuple[Path, bytes]] = []
    size = 0
    for path in files:
        if path.stat().st_size >= CHUNK_BYTES:
            if batch:
                yield _batch_symbols(batch, mode), size, len(batch)
                batch, size = [], 0
            yield from _large_file_symbols(path, mode, digest)
            continue
        data = _read(path)
        if digest is not None:
            digest.update(f"\0{path.name}\0{len(data)}\0".encode())
            digest.update(data)
        batch.append((path, data))
        size += len(data)
        if size >= CHUNK_BYTES:
            yield _batch_symbols(batch, mode), size, len(batch)
            batch, size = [], 0
    if batch:
        yield _batch_symbols(batch, mode), size, len(batch)


def _batch_symbols(batch: list[tuple[Path, bytes]], mode: str) -> np.ndarray:
    data = b"".join(d for _, d in batch)
    if mode == "byte":
        return np.frombuffer(data, dtype=np.uint8)
    # Text joined from valid files is valid, and a valid file never starts with a
    # continuation byte (one that could complete the end of the file before): so one
    # decode checks every file. When it fails, each file alone names the one at fault.
    if not any(d[:1] and 0x80 <= d[0] < 0xC0 for _, d in batch[1:]):
        try:
            return _code_points(data.decode("utf-8"))
        except UnicodeDecodeError:
            pass
    for path, d in batch:
        _utf8_or_error(path, d, 0)
    return _code_points(data.decode("utf-8"))


def _large_file_symbols(
    path: Path, mode: str, digest: Any | None
) -> Iterator[tuple[np.ndarray, int, int]]:
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    if digest is not None:
        digest.update(f"\0{path.name}\0{path.stat().st_size}\0".encode())
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                if digest is not None:
                    digest.update(chunk)
                offset += len(chunk)
                if mode == "byte":
                    yield np.frombuffer(chunk, dtype=np.uint8), len(chunk), 0
                else:
                    yield _code_points(decoder.decode(chunk)), len(chunk), 0
    except OSError as err:
        raise CorpusError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError as err:
        _invalid_utf8(path, offset - len(chunk) + err.start)
    if mode != "byte":
        _utf8_or_error(path, b"", offset, decoder)
    yield np.empty(0, dtype=np.uint32), 0, 1


def _utf8_or_error(path: Path, data: bytes, offset: int, decoder=None) -> None:
    try:
        if decoder is not None:
            decoder.decode(data, final=True)
        else:
            data.decode("utf-8")
    except UnicodeDecodeError as err:
        _invalid_utf8(path, offset + err.start)


def _invalid_utf8(path: Path, at: int) -> None:
    raise CorpusError(
        f"{path} is not valid UTF-8 (byte {at}); set data.vocab=byte to read any file as bytes"
    ) from None


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CorpusError(f"cannot read {path}: {err.strerror}") from None
