"""Corpora: list the files (walk.py), read them as their types say
(read.py, records.py), encode the text once into a compact id array, cache it, split it.

Encoding streams the files in chunks and writes the ids straight to the cache file, so
memory stays near one chunk whatever the corpus size: a first pass reads every byte to
find the vocabulary, the length and the content key; a second writes the ids in the
smallest dtype (one byte per character for vocabularies up to 256). Later runs find the
entry by the files' fingerprint without reading them, and memory-map it: training reads
its windows from the map, so a corpus never has to fit in RAM (see cache.py).
"""

from __future__ import annotations

import codecs
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

from charlstm.config import DataConfig
from charlstm.data import cache, tasks
from charlstm.data.documents import DocumentCutter, document_chunks, label_separator
from charlstm.data.read import Reader
from charlstm.data.records import bad_record_note
from charlstm.data.vocab import END, LABEL_BASE, Vocab
from charlstm.data.walk import REASONS, Listing, Skipped, check_single_file, walk
from charlstm.errors import CorpusError
from charlstm.progress import Tally, Work

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
    skipped: tuple[Skipped, ...] = ()  # files passed over (binary, special, ...)
    notes: tuple[str, ...] = ()  # what else the reader had to say (records left out)

    def report(self) -> list[str]:
        """One line for the files passed over (how many, of what kinds, a few names),
        and the reader's notes."""
        lines = list(self.notes)
        if self.skipped:
            kinds: dict[str, int] = {}
            for s in self.skipped:
                kinds[s.reason] = kinds.get(s.reason, 0) + 1
            shown = ", ".join(f"{n} {REASONS[r]}" for r, n in sorted(kinds.items()))
            names = ", ".join(s.shown for s in self.skipped[:4])
            more = ", ..." if len(self.skipped) > 4 else ""
            lines.append(f"passed over {len(self.skipped)} file(s): {shown} ({names}{more})")
        return lines

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
    listing, strict = list_corpus(cfg, console)
    folder = cache.cache_dir(cfg)
    fp = cache.fingerprint(listing.files + listing.ignore_files, cfg.vocab + listing_tag(cfg))
    key, remembered = cache.key_for(folder, fp)
    entry = cache.read_entry(folder, key) if key else None
    if entry is None:
        reader = Reader(cfg, listing.files, listing.root, strict)
        shown = EncodeProgress(listing.files, console, quiet)
        key, entry, notes = _encode(reader, cfg, folder, shown)
        note = bad_record_note(reader.records)
        remembered = {
            "skipped": [
                [s.name, s.reason]
                for s in sorted(listing.skipped + reader.skipped, key=lambda s: s.name)
            ],
            "notes": ([note] if note else []) + notes,
        }
        cache.remember_key(folder, fp, key, remembered)
    ids, vocab = entry
    skipped = tuple(Skipped(name, reason) for name, reason in remembered.get("skipped", []))
    corpus = Corpus(
        ids, vocab, cfg.path, len(listing.files), key, skipped, tuple(remembered.get("notes", []))
    )
    if console is not None:
        for line in corpus.report():
            console.print(line, markup=False, highlight=False)
    return corpus


def changed_corpus(path: str, what: str) -> str:
    """The one line for a corpus that is no longer the text a checkpoint trained on."""
    return (
        f"data.path {path} is not the text this checkpoint was trained on (its content "
        f"changed since): cannot {what}; to train on new text, start a new run from "
        "these weights (fine-tuning)"
    )


def training_corpus(
    cfg: DataConfig, vocab: Vocab, corpus_key: str | None, what: str, console=None
) -> Corpus:
    """The corpus a checkpoint was trained on, read again on this machine: one line
    (naming `what` cannot be done) when it is no longer that text."""
    corpus = load_corpus(cfg, console, quiet=console is None)
    if corpus.vocab != vocab or (corpus_key is not None and corpus.key != corpus_key):
        raise CorpusError(changed_corpus(cfg.path, what))
    return corpus


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CorpusError(f"cannot read {path}: {err.strerror}") from None


def read_text_file(path: Path) -> str:
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorpusError(f"{path} is not valid UTF-8 (byte {err.start})") from None


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def settings_tag(cfg: DataConfig) -> str:
    """The reading settings that change the text, for the cache's keys: empty for the
    defaults, so a corpus read the default way keeps the key it always had."""
    parts = []
    encoding = codecs.lookup(cfg.encoding).name
    if encoding != "utf-8":
        parts.append(f"encoding={encoding}")
    if cfg.newlines != "keep":
        parts.append(f"newlines={cfg.newlines}")
    if cfg.field is not None:
        parts.append(f"field={cfg.field}")
    if cfg.documents is not None:
        parts.append(f"documents={cfg.documents}")
    for name in ("label_separator", "label_field"):
        if getattr(cfg, name) is not None:
            parts.append(f"{name}={getattr(cfg, name)!r}")
    return "".join(f"/{p}" for p in parts)


def listing_tag(cfg: DataConfig) -> str:
    """Everything that decides what is read, for the cache's fingerprint: the reading
    settings, and the filters (which also choose an archive's members)."""
    return f"{settings_tag(cfg)}/{cfg.include}/{cfg.exclude}/{cfg.respect_ignore}"


def list_corpus(cfg: DataConfig, console: Console | None = None) -> tuple[Listing, bool]:
    """What data.path names, and whether it is one file given by name (then a file
    that is not text is an error, not a note). A long walk shows how far it got."""
    found = Tally("listing corpus", "files", console).add
    if cfg.path == STDLIB:
        root = stdlib_root()
        listing = walk(root, cfg.include or ("*.py",), cfg.exclude, False, STDLIB_SKIP, found)
        return _some_files(listing, root, cfg), False
    root = Path(cfg.path).expanduser()
    if root.is_dir():
        listing = walk(root, cfg.include, cfg.exclude, cfg.respect_ignore, found=found)
        return _some_files(listing, root, cfg), False
    if not root.exists() and not root.is_symlink():
        if root.name == "tinyshakespeare.txt":  # the one corpus the configs name but cannot ship
            raise CorpusError(
                f"data.path not found: {cfg.path} (make get-data fetches tiny Shakespeare)"
            )
        raise CorpusError(
            f"data.path not found: {cfg.path} (a text file, a directory, or {STDLIB})"
        )
    check_single_file(root)
    return Listing(root, [root]), True


def _some_files(listing: Listing, root: Path, cfg: DataConfig) -> Listing:
    if not listing.files:
        wanted = f" matching {list(cfg.include)}" if cfg.include else ""
        passed = f" ({len(listing.skipped)} passed over)" if listing.skipped else ""
        raise CorpusError(
            f"no files{wanted} in {root}{passed} (check data.path, data.include, "
            "data.exclude and the folder's .gitignore)"
        )
    return listing


@dataclass
class EncodeProgress:
    """Where an encode shows its progress, and the files whose bytes measure it."""

    files: list[Path]
    console: Console | None
    quiet: bool
    total: int | None = None

    def work(self, what: str) -> Work:
        if self.total is None:  # once for both passes
            self.total = sum(os.stat(f).st_size for f in self.files)
        return Work(what, self.total, "bytes", self.console, self.quiet)


def _encode(
    reader: Reader, cfg: DataConfig, folder: Path, shown: EncodeProgress
) -> tuple[str, tuple[np.ndarray, Vocab], list[str]]:
    """Pass 1 finds the content key, vocabulary, labels and length; pass 2 (skipped when
    an entry with that key exists: files touched, content unchanged) writes the ids
    file. Also returns what the cutting into documents had to say."""
    digest = hashlib.sha256(
        f"charlstm-corpus/{cache.CACHE_VERSION}/{cfg.vocab}{settings_tag(cfg)}".encode()
    )
    # END is past every code point: seen there too, then taken out of the characters.
    seen = np.zeros(END + 1, dtype=bool) if cfg.vocab == "char" else None
    labels: set[str] = set()

    def first_pass_label(name: str) -> int:  # symbols are known only once all are seen
        labels.add(name)
        return END

    total = 0
    with shown.work("reading corpus") as work:
        chunks, cutter = _chunks(reader, cfg, digest, first_pass_label)
        for symbols, raw, done in chunks:
            if seen is not None:
                seen[symbols] = True
            total += len(symbols)
            work.advance(raw, files=done)
    notes = []
    if cutter is not None:
        cutter.check_labels(cfg.path, "data.label_separator")
        notes = [cutter.note()] if cutter.note() else []
        total -= 1  # the opening end symbol alone is no text
    if total == 0:
        passed = f" ({len(reader.skipped)} file(s) passed over)" if reader.skipped else ""
        raise CorpusError(
            f"corpus {cfg.path} is empty{passed}: give data.path a file with text in it"
        )
    total += cutter is not None
    key = digest.hexdigest()[:32]
    entry = cache.read_entry(folder, key)
    if entry is not None:
        return key, entry, notes
    if seen is not None:
        seen[END] = False
    vocab = Vocab.bytes() if seen is None else Vocab.from_code_points(np.flatnonzero(seen))
    if cutter is not None:
        vocab = vocab.with_documents(labels)
    symbol_of = {name: LABEL_BASE + i for i, name in enumerate(vocab.labels)}
    table = np.zeros(max(vocab.code_points) + 1, dtype=vocab.dtype)
    table[list(vocab.code_points)] = np.arange(vocab.size)
    with shown.work("encoding corpus") as work:

        def ids() -> Iterator[np.ndarray]:
            for symbols, raw, done in _chunks(reader, cfg, None, symbol_of.__getitem__)[0]:
                if seen is not None and not _all_seen(seen, symbols):  # edited since pass 1
                    raise CorpusError(f"corpus {cfg.path} changed while it was being encoded")
                yield table[symbols]
                work.advance(raw, files=done)

        return key, _write_entry(folder, key, vocab, total, ids()), notes


def _all_seen(seen: np.ndarray, symbols: np.ndarray) -> bool:
    text = symbols[symbols < END]
    return bool(seen[text].all())


def _chunks(reader: Reader, cfg: DataConfig, digest: Any | None, label_symbol):
    """The symbol chunks of one pass, and the cutter that makes documents of them (None
    for one long text)."""
    if cfg.documents is None:
        return _symbol_chunks(reader, digest), None
    cutter = DocumentCutter(cfg.documents, label_separator(cfg), reader.byte_mode)
    return document_chunks(reader.pieces(digest), cutter, label_symbol), cutter


def in_vocab(corpus: Corpus, vocab: Vocab, cfg: DataConfig) -> Corpus:
    """The corpus in the ids of `vocab`, a vocabulary holding all its characters (one
    grown for fine-tuning): mapped once, cached beside the corpus's own entry."""
    if vocab == corpus.vocab:
        return corpus
    symbols = _symbols_in(corpus.vocab, vocab)
    if not set(symbols.tolist()) <= set(vocab.code_points):
        raise CorpusError(changed_corpus(corpus.source, "use it with this checkpoint"))
    table = vocab.ids_of(symbols)
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


def _symbols_in(own: Vocab, other: Vocab) -> np.ndarray:
    """The symbol of each id of `own` as `other` writes it: characters and the end are
    the same everywhere; a label is known by its name (its symbol depends on the order
    in which a vocabulary met its labels)."""
    points = list(own.code_points)
    for i in range(len(points)):
        name = own.label_of(i)
        if name is not None and name in other.labels:
            points[i] = LABEL_BASE + other.labels.index(name)
    small = own.mode == "byte" and max(points) < 256
    return np.asarray(points, dtype=np.uint8 if small else np.uint32)


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
    reader: Reader, digest: Any | None = None
) -> Iterator[tuple[np.ndarray, int, int]]:
    """(symbols, bytes read, files finished) chunk by chunk over all files, in order:
    code points, or bytes. Small files' texts are joined first, as one conversion per
    file would cost more than converting them."""
    batch: list[str | bytes] = []
    size = raw = done = 0
    for piece in reader.pieces(digest):
        if piece.content:
            batch.append(piece.content)
            size += len(piece.content)
        raw += piece.raw
        done += piece.files_done
        if size >= CHUNK_BYTES:
            yield _symbols(batch, reader.byte_mode), raw, done
            batch, size, raw, done = [], 0, 0, 0
    if batch or raw or done:
        yield _symbols(batch, reader.byte_mode), raw, done


def _symbols(batch: list, byte_mode: bool) -> np.ndarray:
    if byte_mode:
        return np.frombuffer(b"".join(batch), dtype=np.uint8)
    return np.frombuffer("".join(batch).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
