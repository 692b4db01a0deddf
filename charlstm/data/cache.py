"""The on-disk cache of encoded corpora.

An entry is `KEY.npy` (the ids, memory-mapped when read) and `KEY.json` (length and
vocabulary), where KEY is a hash of the corpus's content and vocab mode: the key a
checkpoint records, so it can tell later whether its corpus changed. Finding KEY means
reading every byte, so a second, cheap name points at it: `fp-FINGERPRINT.json`, where
the fingerprint hashes the files' paths, sizes and modification times (as make and
ninja decide what changed), with the ignore files that chose them and the reading
settings; it also keeps which files reading passed over, to report them again. An
unchanged corpus is thus found without reading it; a touched but unchanged one is read
once more, found under the same KEY, and not encoded.

Everything here is best effort: a cache that cannot be written or read only costs the
next run an encode.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from charlstm.config import DataConfig
from charlstm.data.vocab import Vocab

CACHE_VERSION = 2


def cache_dir(cfg: DataConfig) -> Path:
    if cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "charlstm"


def fingerprint(files: list[Path], mode: str) -> str:
    """Paths, sizes and modification times: changes when any file is edited."""
    digest = hashlib.sha256(f"charlstm-files/{CACHE_VERSION}/{mode}".encode())
    for f in files:
        st = os.stat(f)
        digest.update(
            f"\0{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}".encode(
                "utf-8", "surrogateescape"
            )
        )
    return digest.hexdigest()[:32]


def key_for(folder: Path, fp: str) -> tuple[str | None, dict]:
    """The content key last seen for this fingerprint, if any, and what reading those
    files had to say (the files passed over, notes)."""
    try:
        seen = json.loads((folder / f"fp-{fp}.json").read_text())
        return str(seen["key"]), seen
    except (OSError, ValueError, KeyError, TypeError):
        return None, {}


def remember_key(folder: Path, fp: str, key: str, said: dict | None = None) -> None:
    _write_json(folder, f"fp-{fp}.json", {"key": key, **(said or {})})


def read_entry(folder: Path, key: str) -> tuple[np.ndarray, Vocab] | None:
    """The memory-mapped ids and vocabulary of an entry; None when missing or damaged."""
    try:
        meta = json.loads((folder / f"{key}.json").read_text())
        ids = np.load(folder / f"{key}.npy", mmap_mode="r")
        vocab = Vocab.from_dict(meta["vocab"])
    except (OSError, ValueError, KeyError):
        return None
    return (ids, vocab) if len(ids) == meta.get("length") else None


def ids_file(folder: Path, key: str) -> Path:
    return folder / f"{key}.npy"


def commit_entry(folder: Path, key: str, written: Path, length: int, vocab: Vocab) -> None:
    """Make a finished ids file the entry KEY (its metadata goes last: an entry without
    it is never read)."""
    os.replace(written, ids_file(folder, key))
    _write_json(folder, f"{key}.json", {"length": length, "vocab": vocab.to_dict()})


def _write_json(folder: Path, name: str, value: dict) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f"{name}.{os.getpid()}.tmp"  # ranks may write at once
        tmp.write_text(json.dumps(value))
        os.replace(tmp, folder / name)
    except OSError:
        pass
