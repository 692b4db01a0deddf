"""Cutting the reader's text into documents (data.documents), and the symbols they
become: each document its label's control symbol (if labelled), its characters, then
the end symbol, which is also where the next document starts from. The stream opens
with an end symbol, so every document is read from the same context.

The reader marks where files, archive members and records end (pieces.BOUNDARY); this
adds line ends (`lines`) or blank lines (`paragraphs`). The text is cut as it streams
past, holding back only the unfinished document, so a corpus of any size costs memory
of about one chunk and its longest document.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from charlstm.config import DataConfig
from charlstm.data.pieces import BOUNDARY, CHUNK_BYTES, LABEL_MARK
from charlstm.data.vocab import END
from charlstm.errors import CorpusError

# What may be held back at a chunk's end because a blank line may continue past it.
BLANK = " \t\r\f\v\n"
# A labelled corpus may leave out at most this share of its documents (no separator)
# before it is an error rather than a few bad lines.
MAX_UNLABELLED = 0.01


def boundary_pattern(mode: str) -> str:
    if mode == "lines":
        return f"[{BOUNDARY}\n]"
    if mode == "paragraphs":  # a line end, then one or more blank lines
        return f"{BOUNDARY}|\n(?:[ \t\r\f\v]*\n)+"
    return BOUNDARY  # files, records


def label_separator(cfg: DataConfig) -> str | None:
    """The text between a document's label and its text, with `\\t` written as a tab
    (as it is typed on a command line)."""
    if cfg.label_field is not None:
        return LABEL_MARK
    if cfg.label_separator is None:
        return None
    return cfg.label_separator.replace("\\t", "\t")


@dataclass
class DocumentCutter:
    """Fed the reader's pieces in order, gives back the documents each completes as
    (label or None, text); `finish` gives the last."""

    mode: str
    separator: str | None
    byte_mode: bool
    documents: int = 0
    unlabelled: int = 0
    _head: list = field(default_factory=list)
    _tail: str | bytes = ""

    def __post_init__(self) -> None:
        pattern = boundary_pattern(self.mode)
        self._split = re.compile(pattern.encode() if self.byte_mode else pattern).split
        self._blank = BLANK.encode() if self.byte_mode else BLANK
        self._tail = b"" if self.byte_mode else ""
        if self.separator is not None and self.byte_mode:
            self.separator = self.separator.encode()

    def feed(self, content: str | bytes) -> list[tuple[str | None, str | bytes]]:
        region = self._tail + content
        parts = self._split(region)
        done = []
        if len(parts) > 1:
            done = [self._tail[:0].join(self._head) + parts[0], *parts[1:-1]]
            self._head = []
        last = parts[-1]
        # Held back: blank space that a blank line crossing into the next piece may end.
        keep = len(last.rstrip(self._blank)) if self.mode == "paragraphs" else len(last)
        self._head.append(last[:keep])
        self._tail = last[keep:]
        return self._documents(done)

    def finish(self) -> list[tuple[str | None, str | bytes]]:
        last = self._tail[:0].join(self._head) + self._tail
        self._head, self._tail = [], self._tail[:0]
        return self._documents([last])

    def _documents(self, texts: list) -> list[tuple[str | None, str | bytes]]:
        out = []
        for text in texts:
            if self.mode == "paragraphs":
                text = text.strip(self._blank[-1:])
            if not text.strip():  # empty lines and blank files are no documents
                continue
            self.documents += 1
            if self.separator is None:
                out.append((None, text))
                continue
            label, found, text = text.partition(self.separator)
            if not found or not label:
                self.unlabelled += 1
                continue
            if isinstance(label, bytes):
                label = label.decode("utf-8", "replace")
            out.append((label, text))
        return out

    def check_labels(self, source: str, separator_key: str) -> None:
        if self.documents and self.unlabelled / self.documents > MAX_UNLABELLED:
            raise CorpusError(
                f"corpus {source}: {self.unlabelled:,} of {self.documents:,} documents have "
                f"no label (nothing before {separator_key}): set {separator_key} to what "
                "separates each label from its text"
            )

    def note(self) -> str | None:
        if not self.unlabelled:
            return None
        return f"left out {self.unlabelled:,} document(s) without a label"


def document_symbols(
    documents: list[tuple[str | None, str | bytes]], label_symbol: Callable[[str], int]
) -> np.ndarray:
    """The symbols of documents: [label] characters END for each, as uint32."""
    if not documents:
        return np.zeros(0, dtype=np.uint32)
    texts = [text for _, text in documents]
    if isinstance(texts[0], bytes):
        symbols = np.frombuffer(b"".join(texts), dtype=np.uint8).astype(np.uint32)
    else:
        symbols = np.frombuffer(
            "".join(texts).encode("utf-32-le", "surrogatepass"), dtype=np.uint32
        )
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    where, values = [ends], [np.full(len(texts), END, dtype=np.uint32)]
    labels = [label for label, _ in documents]
    if labels[0] is not None:
        where.append(starts)
        values.append(np.fromiter(map(label_symbol, labels), dtype=np.uint32))
    # np.insert keeps the order of equal positions as given: one document's end comes
    # before the next one's label, both at the same place in the text.
    return np.insert(symbols, np.concatenate(where), np.concatenate(values))


def document_chunks(
    pieces: Iterator, cutter: DocumentCutter, label_symbol: Callable[[str], int]
) -> Iterator[tuple[np.ndarray, int, int]]:
    """(symbols, bytes read, files finished) from the reader's pieces, documents whole:
    the opening end symbol first."""
    yield np.array([END], dtype=np.uint32), 0, 0
    batch: list = []
    size = raw = done = 0
    for piece in pieces:
        if piece.content:
            batch += cutter.feed(piece.content)
            size += len(piece.content)
        raw += piece.raw
        done += piece.files_done
        if size >= CHUNK_BYTES:
            yield document_symbols(batch, label_symbol), raw, done
            batch, size, raw, done = [], 0, 0, 0
    batch += cutter.finish()
    yield document_symbols(batch, label_symbol), raw, done
