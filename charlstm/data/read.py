"""One reader for every kind of file a corpus may hold: it opens each file as its type
says (filetypes.py), decompresses and unpacks as a stream (never to disk, memory bound
by a chunk), takes the text field of records, decodes with data.encoding, drops a
UTF-8 byte-order mark, converts line ends when data.newlines is lf, and passes over
binary files (a NUL byte in the first block; in char mode also text that does not
decode) with a note of each. What it yields is text (char mode) or bytes (byte mode),
piece by piece, in a fixed order, and it feeds the corpus's content key as it goes.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from charlstm.config import DataConfig
from charlstm.data.filetypes import SNIFF_BYTES, FileType, file_type, looks_binary
from charlstm.data.pieces import BOUNDARY, CHUNK_BYTES, LABEL_MARK, Piece
from charlstm.data.records import RecordCount, RecordReading
from charlstm.data.walk import Skipped, matches
from charlstm.errors import CorpusError

PLAIN = FileType()  # text, read as it is


class Counting(io.RawIOBase):
    """A file whose reads are counted, so progress is measured in bytes on disk even
    through a decompressor."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n

    def take(self) -> int:
        n, self.count = self.count, 0
        return n

    def close(self) -> None:
        self.raw.close()
        super().close()


class MemberShare(io.RawIOBase):
    """Progress through a zip member in bytes of the archive: its compressed size, in
    step with what has been read of it. (Its bytes on disk are read by zipfile itself,
    and one member may be most of the archive: a 4 GB member of a 4 MB zip.)"""

    def __init__(self, member: IO[bytes], compressed: int, size: int):
        self.member = member
        self.ratio = compressed / max(1, size)
        self.read_so_far = 0  # uncompressed bytes handed on
        self.counted = 0  # archive bytes taken so far

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.member.readinto(buffer)
        self.read_so_far += n or 0
        return n

    def take(self) -> int:
        share = int(self.read_so_far * self.ratio) - self.counted
        self.counted += share
        return share


def read_full(stream: IO[bytes], n: int) -> bytes:
    """n bytes, or fewer only at the end (a decompressor may return less per read)."""
    parts, wanted = [], n
    while wanted > 0:
        part = stream.read(wanted)
        if not part:
            break
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def decompressed(raw: IO[bytes], compression: str | None) -> IO[bytes]:
    if compression is None:
        return io.BufferedReader(raw)
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if compression == "bz2":
        return bz2.BZ2File(raw)
    if compression == "xz":
        return lzma.LZMAFile(raw)
    try:
        import zstandard
    except ImportError:
        raise CorpusError(
            "reading .zst files needs the zstandard package: pip install zstandard"
        ) from None
    return zstandard.ZstdDecompressor().stream_reader(raw, closefd=False)


class Reader(RecordReading):
    """Reads the files of a listing in order. `strict` (data.path names one file):
    a binary or undecodable file is an error, not a note."""

    def __init__(self, cfg: DataConfig, files: list[Path], root: Path, strict: bool):
        self.cfg = cfg
        self.files = files
        self.root = root
        self.strict = strict
        self.byte_mode = cfg.vocab == "byte"
        self.documents = cfg.documents is not None
        self.boundary = self._same_kind(BOUNDARY) if self.documents else self._empty()
        # In UTF-16 and UTF-32 text NUL bytes are ordinary; there only decoding decides.
        self.nul_is_binary = not codecs.lookup(cfg.encoding).name.startswith(("utf-16", "utf-32"))
        self.skipped: list[Skipped] = []
        self.records: list[RecordCount] = []
        # Worked out once for both passes: a corpus may hold hundreds of thousands of files.
        self.kinds = [file_type(path.name) for path in files]
        prefix = len(str(root)) + 1
        self.names = [
            path.name if path == root else str(path)[prefix:].replace(os.sep, "/") for path in files
        ]

    # -- what the corpus encoder calls -------------------------------------------------
    def pieces(self, digest: Any | None = None) -> Iterator[Piece]:
        self.skipped, self.records = [], []
        for path, kind, name in zip(self.files, self.kinds, self.names, strict=True):
            try:
                with open(path, "rb") as handle:
                    if kind == PLAIN:  # most files of most corpora: read whole, at once
                        size = os.fstat(handle.fileno()).st_size
                        if size < CHUNK_BYTES:
                            data = handle.read()
                            content = self._whole(name, data, digest, plain=True)
                            content = self._empty() if content is None else content + self.boundary
                            yield Piece(content, len(data), 1)
                            continue
                    counted = Counting(handle)
                    yield from self._file(path, name, kind, counted, digest)
                    yield Piece(self._empty(), counted.take(), 1)
            except OSError as err:
                raise CorpusError(f"cannot read {path}: {err.strerror or err}") from None

    def _empty(self) -> str | bytes:
        return b"" if self.byte_mode else ""

    def _same_kind(self, text: str) -> str | bytes:
        return text.encode() if self.byte_mode else text

    def _document_text(self, content: str | bytes) -> str | bytes:
        """Text as a document holds it: without the characters that mark boundaries."""
        if not self.documents:
            return content
        for mark in (BOUNDARY, LABEL_MARK):
            mark = mark.encode() if isinstance(content, bytes) else mark
            if mark in content:
                content = content.replace(mark, self._empty())
        return content

    def _file(self, path: Path, name: str, kind: FileType, raw: Counting, digest):
        if kind.records == "parquet":
            yield from self._parquet(path, name, raw, digest)
        elif kind.archive == "zip":
            yield from self._zip(path, name, raw, digest)
        elif kind.archive == "tar":
            stream = decompressed(raw, kind.compression)
            try:
                yield from self._tar(name, stream, raw, digest)
            except (tarfile.TarError, EOFError, OSError, lzma.LZMAError) as err:
                raise CorpusError(f"{path} is not a readable tar archive ({err})") from None
        else:
            stream = decompressed(raw, kind.compression)
            try:
                size = None if kind.compression else os.fstat(raw.raw.fileno()).st_size
                yield from self._content(name, kind, stream, raw, digest, size)
            except (EOFError, OSError, lzma.LZMAError, zlib.error) as err:
                what = kind.compression or "file"
                raise CorpusError(f"{path} is not a readable {what} file ({err})") from None

    # -- archives ----------------------------------------------------------------------
    def _member_wanted(self, member: str) -> bool:
        parts = member.split("/")
        if any(p.startswith(".") and p not in (".", "..") for p in parts[:-1]):
            return False  # .git/ and other dot folders inside the archive
        cfg = self.cfg
        if cfg.include and not matches(member, cfg.include):
            return False
        return not matches(member, cfg.exclude)

    def _zip(self, path: Path, name: str, raw: Counting, digest) -> Iterator[Piece]:
        # A zip's index is at its end: it is read from the file itself (seekable), and
        # its bytes count as read when it is done.
        try:
            archive = zipfile.ZipFile(path)
        except zipfile.BadZipFile as err:
            raise CorpusError(f"{path} is not a readable zip archive ({err})") from None
        counted = 0
        with archive:
            for info in archive.infolist():
                if info.is_dir() or not self._member_wanted(info.filename):
                    continue
                if info.flag_bits & 0x1:  # encrypted: no password to read it with
                    self._pass_over(f"{name}:{info.filename}", "encrypted", "is encrypted")
                    continue
                with archive.open(info) as member:
                    share = MemberShare(member, info.compress_size, info.file_size)
                    stream = io.BufferedReader(share)
                    yield from self._member(name, info.filename, stream, share, digest)
                    counted += share.counted
        # the index, headers and members passed over: the rest of the file
        yield Piece(self._empty(), max(0, path.stat().st_size - counted), 0)

    def _tar(self, name: str, stream: IO[bytes], raw: Counting, digest) -> Iterator[Piece]:
        with tarfile.open(fileobj=stream, mode="r|") as archive:
            for member in archive:
                if member.isdir() or not self._member_wanted(member.name):
                    continue
                if not member.isfile():
                    if not member.issym() and not member.islnk():
                        self.skipped.append(Skipped(f"{name}:{member.name}", "special"))
                    continue
                handle = archive.extractfile(member)
                if handle is not None:
                    yield from self._member(name, member.name, handle, raw, digest)

    def _member(self, archive: str, member: str, stream: IO[bytes], raw, digest):
        kind = file_type(member)
        label = f"{archive}:{member}"
        if kind.archive or kind.compression or kind.records == "parquet":
            self.skipped.append(Skipped(label, "nested"))
            return
        strict, self.strict = self.strict, False  # a member is passed over, never refused
        try:
            yield from self._content(label, kind, stream, raw, digest, None)
        finally:
            self.strict = strict

    # -- text and records from a stream ------------------------------------------------
    def _content(self, name, kind, stream, raw, digest, size: int | None) -> Iterator[Piece]:
        if kind.records in ("jsonl", "csv", "tsv"):
            yield from self._records(name, kind.records, stream, raw, digest)
        else:
            yield from self._text(name, stream, raw, digest, size)
        if self.documents:  # a file or member ends a document
            yield Piece(self.boundary, 0, 0)

    def _text(self, name: str, stream: IO[bytes], raw, digest, size: int | None) -> Iterator[Piece]:
        """A text file (or member, or decompressed stream) chunk by chunk. `size`: of a
        file read straight from disk, whose content key is the one charlstm always gave
        it (None for what comes out of an archive or a decompressor)."""
        # A file on disk is read at its own size (a chunk-sized buffer per small file
        # would cost more than reading it); a stream a chunk at a time.
        first = read_full(stream, CHUNK_BYTES if size is None else min(CHUNK_BYTES, size + 1))
        if len(first) < CHUNK_BYTES:  # the whole file: it can be passed over if it fails
            content = self._whole(name, first, digest, plain=size is not None)
            if content is not None:
                yield Piece(content, raw.take(), 0)
            return
        if self._binary(name, first):
            return
        yield from self._long_text(name, first, stream, raw, digest, size)

    def _binary(self, name: str, first: bytes) -> bool:
        """Whether a file is passed over (or, named alone, refused) for what its first
        block holds."""
        binary = self.nul_is_binary and looks_binary(first[:SNIFF_BYTES])
        if binary and first.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            if not self.byte_mode:
                self._pass_over(
                    name, "not-text", "it starts as UTF-16 text does: set data.encoding=utf-16"
                )
                return True
        if binary and not (self.strict and self.byte_mode):
            self._pass_over(name, "binary", "it holds NUL bytes: it looks binary")
            return True
        return False

    def _whole(self, name: str, data: bytes, digest, plain: bool) -> str | bytes | None:
        """A whole file's content, or None when it is passed over."""
        if self._binary(name, data):
            return None
        if self.byte_mode:
            content = self._lf(data)
            self._digest(digest, name, content, plain=plain and content is data)
            return self._document_text(content)
        try:
            text = data.decode(self.cfg.encoding)
        except UnicodeDecodeError as err:
            self._undecodable(name, err.start)
            return None
        text, changed = self._normalised(text, first=True)
        if plain and not changed:
            self._digest(digest, name, data, plain=True)
        else:
            self._digest(digest, name, text.encode("utf-8", "surrogatepass"), plain=False)
        return self._document_text(text)

    def _long_text(self, name, head: bytes, stream, raw, digest, size: int | None):
        """A file longer than a chunk: decoded incrementally. An error past the first
        chunk cannot pass the file over (its start is already read): it is one line."""
        decoder = None if self.byte_mode else codecs.getincrementaldecoder(self.cfg.encoding)()
        # Read from disk as it stands (no mark to drop, no line ends to change): the key
        # charlstm always gave it, over its bytes; otherwise over the text produced.
        as_is = (
            size is not None
            and self.cfg.newlines == "keep"
            and not head.startswith(codecs.BOM_UTF8)
        )
        if digest is not None:
            tag = f"{name.rsplit('/', 1)[-1]}\0{size}" if as_is else f"{name}\0long"
            digest.update(f"\0{tag}\0".encode("utf-8", "surrogateescape"))
        offset, first, carry = 0, True, self._empty()
        chunk = head
        while chunk:
            nxt = read_full(stream, CHUNK_BYTES)
            final = not nxt
            if decoder is None:
                text = chunk
            else:
                try:
                    text = decoder.decode(chunk, final=final)
                except UnicodeDecodeError as err:
                    self._undecodable(name, offset + err.start, started=not first)
                    return
            text, carry = carry + text, self._empty()
            cr = b"\r" if decoder is None else "\r"
            if self.cfg.newlines == "lf" and text.endswith(cr) and not final:
                text, carry = text[:-1], cr  # its \n may start the next chunk
            if decoder is None:
                content = self._lf(text)
            else:
                content, _ = self._normalised(text, first=first)
            if digest is not None:
                if as_is or decoder is None:
                    digest.update(chunk)
                else:
                    digest.update(content.encode("utf-8", "surrogatepass"))
            yield Piece(self._document_text(content), raw.take(), 0)
            offset += len(chunk)
            first, chunk = False, nxt

    def _normalised(self, text: str, first: bool) -> tuple[str, bool]:
        """Without a leading byte-order mark; with LF line ends when asked. Returns the
        text and whether it changed."""
        changed = False
        if first and text.startswith("\ufeff"):
            text, changed = text[1:], True
        lf = self._lf(text)
        return lf, changed or lf is not text

    def _lf(self, text: str | bytes) -> str | bytes:
        """With data.newlines lf: CRLF and lone CR as LF, in text or bytes."""
        if self.cfg.newlines != "lf":
            return text
        cr, lf = ("\r", "\n") if isinstance(text, str) else (b"\r", b"\n")
        return text.replace(cr + lf, lf).replace(cr, lf) if cr in text else text

    def _digest(self, digest, name: str, data: bytes, plain: bool) -> None:
        if digest is None:
            return
        # A plain file keeps the key charlstm always gave it: name, length, bytes.
        tag = name.rsplit("/", 1)[-1] if plain else f"{name}\0decoded"
        digest.update(f"\0{tag}\0{len(data)}\0".encode("utf-8", "surrogateescape"))
        digest.update(data)

    def _undecodable(self, name: str, at: int, started: bool = False) -> None:
        encoding = self.cfg.encoding
        encoding = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
        if self.strict or started:
            raise CorpusError(
                f"{self._shown(name)} is not valid {encoding} (byte {at}): set data.encoding "
                "to its encoding (e.g. latin-1, gbk, utf-16), or data.vocab=byte to read "
                "its bytes"
            )
        self.skipped.append(Skipped(name, "not-text"))

    def _pass_over(self, name: str, reason: str, why: str) -> None:
        if self.strict:
            advice = (
                ""
                if "data.encoding" in why
                else ("; charlstm reads text (data.vocab=byte reads any single file's bytes)")
            )
            raise CorpusError(f"{self._shown(name)}: {why}{advice}")
        self.skipped.append(Skipped(name, reason))

    def _shown(self, name: str) -> str:
        return str(self.root) if self.root.is_file() and name == self.root.name else name
