"""Corpora: find the files, encode them once into a compact id array, cache it, split it.

Encoding streams the files in chunks, so memory stays near the size of the output array
(one byte per character for vocabularies up to 256) whatever the corpus size: a first
pass finds the vocabulary and length, a second fills a preallocated array. The result is
cached on disk under a hash of the content and settings; a second run memory-maps it.
"""

from __future__ import annotations

import codecs
import fnmatch
import hashlib
import json
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlstm import tasks
from charlstm.config import DataConfig
from charlstm.errors import CorpusError
from charlstm.vocab import Vocab

STDLIB = "python-stdlib"
CHUNK_BYTES = 8 << 20
CACHE_VERSION = 1
# Folders of the standard library that are not its own code: installed packages and
# the test suites (which hold deliberately broken files).
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


@dataclass(frozen=True)
class Corpus:
    ids: np.ndarray  # one id per character (or byte), compact dtype
    vocab: Vocab
    source: str  # what was read, for logs
    num_files: int

    def split(self, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
        """Contiguous split: the last `val_fraction` of the text is validation."""
        n_val = max(2, int(len(self.ids) * val_fraction))
        if len(self.ids) - n_val < 2:
            raise CorpusError(
                f"corpus {self.source} has only {len(self.ids)} characters: too short to split"
            )
        return self.ids[:-n_val], self.ids[-n_val:]


def load_corpus(cfg: DataConfig) -> Corpus:
    if cfg.path.startswith(tasks.PREFIX):  # generated on the spot: nothing to cache
        name = cfg.path[len(tasks.PREFIX) :]
        text = tasks.corpus_text(
            name, cfg.task_count, cfg.task_seed, cfg.task_n_min, cfg.task_n_max
        )
        vocab = (
            Vocab.bytes() if cfg.vocab == "byte" else Vocab.from_code_points(map(ord, set(text)))
        )
        return Corpus(vocab.encode(text), vocab, cfg.path, 0)
    files = find_files(cfg.path, cfg.include)
    key = _content_key(files, cfg.vocab)
    cached = _read_cache(cfg, key)
    if cached is not None:
        ids, vocab = cached
    else:
        ids, vocab = _encode(files, cfg.vocab)
        _write_cache(cfg, key, ids, vocab)
    if len(ids) == 0:
        raise CorpusError(f"corpus {cfg.path} is empty: give data.path a file with text in it")
    return Corpus(ids, vocab, cfg.path, len(files))


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
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip and not d.startswith("."))
        for name in sorted(filenames):
            rel = (Path(dirpath) / name).relative_to(root).as_posix()
            if not patterns or any(
                fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns
            ):
                files.append(Path(dirpath) / name)
    if not files:
        wanted = f" matching {list(patterns)}" if patterns else ""
        raise CorpusError(f"no files{wanted} in {root} (check data.path and data.include)")
    return files


def _chunks(path: Path) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK_BYTES):
                yield chunk
    except OSError as err:
        raise CorpusError(f"cannot read {path}: {err.strerror}") from None


def _decoded_chunks(path: Path) -> Iterator[np.ndarray]:
    """The file's code points, chunk by chunk, decoding UTF-8 strictly."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    try:
        for chunk in _chunks(path):
            text = decoder.decode(chunk)
            offset += len(chunk)
            yield np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as err:
        at = offset + err.start
        raise CorpusError(
            f"{path} is not valid UTF-8 (byte {at}); set data.vocab=byte to read any file as bytes"
        ) from None


def _encode(files: list[Path], mode: str) -> tuple[np.ndarray, Vocab]:
    if mode == "byte":
        vocab = Vocab.bytes()
        total = sum(f.stat().st_size for f in files)
        ids = np.empty(total, dtype=vocab.dtype)
        pos = 0
        for f in files:
            for chunk in _chunks(f):
                ids[pos : pos + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                pos += len(chunk)
        return ids[:pos], vocab
    seen: set[int] = set()
    total = 0
    for f in files:  # pass 1: vocabulary and length
        for cps in _decoded_chunks(f):
            seen.update(np.unique(cps).tolist())
            total += len(cps)
    vocab = Vocab.from_code_points(seen)
    ids = np.empty(total, dtype=vocab.dtype)
    pos = 0
    for f in files:  # pass 2: ids into the preallocated array
        for cps in _decoded_chunks(f):
            ids[pos : pos + len(cps)] = vocab.ids_of(cps)
            pos += len(cps)
    return ids, vocab


def _content_key(files: list[Path], mode: str) -> str:
    digest = hashlib.sha256(f"charlstm-corpus/{CACHE_VERSION}/{mode}".encode())
    for f in files:
        digest.update(f"\0{f.name}\0{f.stat().st_size}\0".encode())
        for chunk in _chunks(f):
            digest.update(chunk)
    return digest.hexdigest()[:32]


def cache_dir(cfg: DataConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charlstm"


def _read_cache(cfg: DataConfig, key: str) -> tuple[np.ndarray, Vocab] | None:
    folder = cache_dir(cfg)
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        ids = np.load(folder / f"{key}.npy", mmap_mode="r")
        vocab = Vocab.from_dict(meta["vocab"])
    except (OSError, ValueError, KeyError):
        return None  # missing or damaged entries are simply rebuilt
    return (ids, vocab) if len(ids) == meta.get("length") else None


def _write_cache(cfg: DataConfig, key: str, ids: np.ndarray, vocab: Vocab) -> None:
    """Best effort: a cache that cannot be written only costs the next run an encode."""
    folder = cache_dir(cfg)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{key}.npy.{os.getpid()}.tmp"  # ranks may write at once
        with open(tmp, "wb") as f:
            np.save(f, ids)
        os.replace(tmp, folder / f"{key}.npy")
        meta = {"length": int(len(ids)), "vocab": vocab.to_dict()}
        tmp = folder / f"{key}.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass
