"""The records half of the reader: JSON Lines, CSV, TSV and Parquet. Each record's text
field (data.field, and data.label_field's label) becomes a document of its own, read a
batch at a time; records without text are counted and, past a small share, an error.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from charlstm.data.pieces import BOUNDARY, CHUNK_BYTES, LABEL_MARK, Piece
from charlstm.errors import CorpusError

# A records file may leave out at most this share of its records (a missing field, or
# one that is not a string) before it is an error rather than a few bad rows.
MAX_BAD_RECORDS = 0.01
# Between records: each record is a document of its own, ended by a newline.
RECORD_END = "\n"
# A record is read whole, so its size bounds the memory reading takes (about six times
# it, with the decoding and the copies on the way): a longer JSON Lines record is passed
# over and listed; a longer CSV/TSV field or line ends the read in one line (a CSV row
# cannot be skipped without knowing where it ends). csv's own limit, 128 KiB a field, is
# far below a long document's length.
MAX_RECORD_CHARS = 32 * 2**20
LINE_PIECE = 1 << 20  # an over-long line is read past this much at a time


@dataclass
class RecordCount:
    """Records of one structured file, and those left out."""

    name: str
    total: int = 0
    bad: int = 0  # without text in the field
    too_long: int = 0  # over MAX_RECORD_CHARS, passed over


class RecordReading:
    """The Reader's methods for records (a part of charlstm.data.read.Reader, kept in
    its own file): they use its settings, counts and text helpers."""

    def _records(self, name: str, fmt: str, stream, raw, digest) -> Iterator[Piece]:
        text = io.TextIOWrapper(
            stream, encoding=self.cfg.encoding, newline="" if fmt != "jsonl" else None
        )
        count = RecordCount(name)
        self.records.append(count)
        try:
            if fmt == "jsonl":
                values = self._jsonl_values(name, text, count)
            else:
                values = self._csv_values(name, text, "\t" if fmt == "tsv" else ",", count)
            yield from self._record_pieces(name, values, raw, digest)
        except UnicodeDecodeError as err:
            raise CorpusError(
                f"{self._shown(name)} is not valid {self.cfg.encoding} ({err.reason}): set "
                "data.encoding"
            ) from None
        finally:
            text.detach()
        self._check_bad(count)

    def _field(self, name: str, columns: list[str]) -> str:
        wanted = self.cfg.field or "text"
        if wanted not in columns and (self.cfg.field is None or not columns):
            shown = ", ".join(columns[:20]) or "none"
            raise CorpusError(
                f"{self._shown(name)} has no {wanted!r} column: set data.field to the column "
                f"that holds the text (columns: {shown})"
            )
        return wanted

    def _label_field(self, name: str, columns: list[str]) -> str | None:
        wanted = self.cfg.label_field
        if wanted is not None and wanted not in columns:
            shown = ", ".join(columns[:20]) or "none"
            raise CorpusError(
                f"{self._shown(name)} has no {wanted!r} column: set data.label_field to the "
                f"column that holds the labels (columns: {shown})"
            )
        return wanted

    def _jsonl_values(self, name, text: IO[str], count: RecordCount) -> Iterator[Any]:
        field = None
        for line_number, line in enumerate(bounded_lines(text), 1):
            if line is None:
                count.total += 1
                count.too_long += 1
                continue
            if not line.strip():
                continue
            count.total += 1
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(
                    f"{self._shown(name)} line {line_number} is not JSON ({err.msg}): JSON "
                    "Lines holds one JSON object per line"
                ) from None
            if field is None:
                columns = list(record) if isinstance(record, dict) else []
                field, label = self._field(name, columns), self._label_field(name, columns)
            if not isinstance(record, dict):
                yield None
            else:
                text = record.get(field)
                yield text if label is None else (record.get(label), text)

    def _csv_values(self, name, text: IO[str], delimiter: str, count) -> Iterator[Any]:
        def lines() -> Iterator[str]:
            for number, line in enumerate(bounded_lines(text), 1):
                if line is None:
                    raise CorpusError(
                        f"{self._shown(name)} line {number} is longer than "
                        f"{MAX_RECORD_CHARS:,} characters: a record that long is "
                        "not read (split it, or convert the file to JSON Lines, whose "
                        "over-long records are passed over)"
                    )
                yield line

        csv.field_size_limit(MAX_RECORD_CHARS)
        try:
            rows = csv.reader(lines(), delimiter=delimiter)
            header = next(rows, [])
            field, label = self._field(name, header), self._label_field(name, header)
            index = header.index(field)
            at = header.index(label) if label is not None else None
            for row in rows:
                if not row:
                    continue
                count.total += 1
                text = row[index] if index < len(row) else None
                if at is None:
                    yield text
                else:
                    yield (row[at] if at < len(row) else None), text
        except csv.Error as err:
            if "field limit" in str(err):
                raise CorpusError(
                    f"{self._shown(name)} has a field longer than "
                    f"{MAX_RECORD_CHARS:,} characters: a record that long is not "
                    "read (split it, or convert the file to JSON Lines)"
                ) from None
            raise CorpusError(f"{self._shown(name)} is not readable CSV ({err})") from None

    def _parquet(self, path: Path, name: str, raw, digest) -> Iterator[Piece]:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise CorpusError(
                f"reading {path.name} needs pyarrow: pip install 'charlstm[parquet]'"
            ) from None
        try:
            table = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as err:
            raise CorpusError(f"{path} is not a readable Parquet file ({err})") from None
        columns = table.schema_arrow.names
        field = self._field(name, columns)
        kind = table.schema_arrow.field(field).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise CorpusError(
                f"{path}: column {field!r} holds {kind}, not text: set data.field to a text "
                f"column (columns: {', '.join(columns[:20])})"
            )
        label = self._label_field(name, columns)
        count = RecordCount(name)
        self.records.append(count)

        def values() -> Iterator[Any]:
            # One row group's batch at a time: a file of gigabytes is never loaded whole.
            wanted = [field] if label is None else [field, label]
            for batch in table.iter_batches(batch_size=16384, columns=wanted):
                column = batch.column(0).to_pylist()
                count.total += len(column)
                if label is None:
                    yield from column
                else:
                    yield from zip(batch.column(1).to_pylist(), column, strict=True)

        yield from self._record_pieces(name, values(), raw, digest, on_disk=path.stat().st_size)
        self._check_bad(count)

    def _record_pieces(self, name, values: Iterator[Any], raw, digest, on_disk: int = 0):
        count = self.records[-1]
        if digest is not None:
            digest.update(
                f"\0{name}\0records\0{self.cfg.field}\0".encode("utf-8", "surrogateescape")
            )
        buffer: list[str] = []
        size = 0
        end = BOUNDARY if self.documents else RECORD_END
        for value in values:
            label = None
            if isinstance(value, tuple):  # (label, text): data.label_field
                label, value = value
                if not isinstance(label, str):
                    value = None
            if not isinstance(value, str):
                count.bad += 1
                continue
            value = self._document_text(self._lf(value))
            if label is not None:
                value = self._document_text(label) + LABEL_MARK + value
            buffer.append(value + end)
            size += len(value) + 1
            if size >= CHUNK_BYTES:
                yield self._record_piece(buffer, raw, digest)
                buffer, size = [], 0
        if buffer:
            yield self._record_piece(buffer, raw, digest)
        if on_disk:  # Parquet is read by pyarrow itself, not through `raw`
            yield Piece(self._empty(), on_disk, 0)

    def _record_piece(self, buffer: list[str], raw, digest) -> Piece:
        text = "".join(buffer)
        data = text.encode("utf-8", "surrogatepass")
        if digest is not None:
            digest.update(data)
        return Piece(data if self.byte_mode else text, raw.take(), 0)

    def _check_bad(self, count: RecordCount) -> None:
        if count.total and count.bad / count.total > MAX_BAD_RECORDS:
            wanted = self.cfg.field or "text"
            raise CorpusError(
                f"{self._shown(count.name)}: {count.bad:,} of {count.total:,} records have "
                f"no text in {wanted!r} (missing, null or not a string): set data.field to "
                "the column that holds the text"
            )


def bad_record_note(records: list[RecordCount]) -> str | None:
    """One line for the records left out of structured files, if any were."""
    parts = []
    for what, attr in (("without text in the field", "bad"),
                       (f"over {MAX_RECORD_CHARS:,} characters", "too_long")):  # fmt: skip
        files = [c for c in records if getattr(c, attr)]
        if files:
            total = sum(getattr(c, attr) for c in files)
            names = ", ".join(c.name for c in files[:3]) + (", ..." if len(files) > 3 else "")
            parts.append(f"{total:,} record(s) {what} ({names})")
    return "left out " + "; ".join(parts) if parts else None


def bounded_lines(text: IO[str]) -> Iterator[str | None]:
    """The lines of a text stream, each read only up to MAX_RECORD_CHARS: a longer one is
    read on and dropped a piece at a time, and comes out as None."""
    while True:
        line = text.readline(MAX_RECORD_CHARS + 1)
        if not line:
            return
        if len(line) <= MAX_RECORD_CHARS or line.endswith("\n"):
            yield line
            continue
        while True:
            rest = text.readline(LINE_PIECE)
            if not rest or rest.endswith("\n"):
                break
        yield None
