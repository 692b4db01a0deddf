"""What the reader yields (a Piece of text or bytes) and the marks it sets in the text
for the document cutter: shared by the reader of files (read.py), of records
(records.py) and the cutter (documents.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# Bytes read at a time from a file or stream; text pieces are about this long.
CHUNK_BYTES = 8 << 20
# With data.documents set, where one document ends and the next begins (after each
# file, archive member and record): a character that the text itself then never
# holds (NUL is dropped from documents), so documents.py can cut the stream at it.
BOUNDARY = "\0"
# Between a record's label and its text (data.label_field), for the same reason.
LABEL_MARK = "\x1f"


@dataclass(frozen=True)
class Piece:
    content: str | bytes  # decoded text (char mode) or bytes (byte mode)
    raw: int  # bytes of the files on disk consumed since the last piece
    files_done: int  # files (on disk) finished with this piece
