"""What a file is, decided in one place: by its name, how to open it (compressed or
not, an archive or not) and what it holds (plain text or records); by its first block,
whether it is binary after all.

    corpus.txt            text
    corpus.txt.gz         text, gzip (also .bz2, .xz, .zst)
    src.tar.gz, src.tgz   a tar archive, gzip (also .tar, .tar.bz2, .tar.xz, .tar.zst)
    src.zip               a zip archive
    data.jsonl(.gz)       JSON Lines records (also .ndjson)
    data.csv, data.tsv    CSV / TSV records (compressed too)
    data.parquet          Parquet records (pyarrow)
"""

from __future__ import annotations

from dataclasses import dataclass

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}
# Short names for compressed tar archives.
TAR_SUFFIXES = {".tgz": "gzip", ".tbz": "bz2", ".tbz2": "bz2", ".txz": "xz", ".tzst": "zstd"}
RECORDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}

# Git and ripgrep call a file binary when its first block holds a NUL byte.
SNIFF_BYTES = 8192


@dataclass(frozen=True)
class FileType:
    compression: str | None = None  # gzip, bz2, xz, zstd: read through a decompressor
    archive: str | None = None  # tar or zip: read member by member
    records: str | None = None  # jsonl, csv, tsv, parquet: one document per record

    def describe(self) -> str:
        what = self.archive or self.records or "text"
        return f"{what} ({self.compression})" if self.compression else what


def file_type(name: str) -> FileType:
    """The type a file's name says it has (lower-cased suffixes, outermost last)."""
    lower = name.lower()
    for suffix, compression in TAR_SUFFIXES.items():
        if lower.endswith(suffix):
            return FileType(compression=compression, archive="tar")
    compression = None
    for suffix, kind in COMPRESSIONS.items():
        if lower.endswith(suffix):
            compression, lower = kind, lower[: -len(suffix)]
            break
    if lower.endswith(".tar"):
        return FileType(compression=compression, archive="tar")
    if lower.endswith(".zip") and compression is None:
        return FileType(archive="zip")
    if lower.endswith(".parquet") and compression is None:
        return FileType(records="parquet")
    for suffix, kind in RECORDS.items():
        if lower.endswith(suffix):
            return FileType(compression=compression, records=kind)
    return FileType(compression=compression)


def looks_binary(first_block: bytes) -> bool:
    return b"\0" in first_block[:SNIFF_BYTES]
