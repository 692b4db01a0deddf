"""Whether a plain text file is a list of short lines (names, titles, words): a corpus
that `charlstm train PATH --time T` trains as documents (data.documents=lines), one per
line, as makemore does, rather than as one text.

Trained as one text, a list teaches the model to continue a list, `sample --documents`
is refused, and a sorted list's validation split is the end of the alphabet (the run is
then judged to be memorising). As documents, each line is generated whole and the
held-out lines are drawn at random.

A list, read from the file's first LIST_SNIFF_BYTES: at least MIN_LINES lines, almost
none blank or indented (prose has paragraphs, code has both), short ones (median at most
MAX_MEDIAN characters, none over MAX_LINE), almost all distinct. Tiny Shakespeare (one
line in five blank), the standard library and prose with long lines are not lists;
32,000 words are.
"""

from __future__ import annotations

from pathlib import Path
from statistics import median

from charlstm.data.filetypes import file_type

LIST_SNIFF_BYTES = 4 << 20
MIN_LINES = 100
MAX_MEDIAN = 40
MAX_LINE = 200
MAX_ODD_SHARE = 0.01  # blank or indented lines
MIN_DISTINCT_SHARE = 0.9


def list_of_lines(path: Path) -> str | None:
    """Why `path` reads as a list of documents (for the log), or None when it does not."""
    if not path.is_file() or file_type(path.name).describe() != "text":
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(LIST_SNIFF_BYTES)
        text = head.decode("utf-8", errors="strict" if len(head) < LIST_SNIFF_BYTES else "ignore")
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.split("\n")
    if len(head) == LIST_SNIFF_BYTES or lines[-1] == "":
        lines = lines[:-1]  # a line cut by the sniff, or the empty one after the last \n
    lines = [line.rstrip("\r") for line in lines]
    if len(lines) < MIN_LINES:
        return None
    odd = sum(1 for line in lines if not line.strip() or line[0] in " \t")
    lengths = [len(line) for line in lines]
    middle = median(lengths)
    if (
        odd > MAX_ODD_SHARE * len(lines)
        or middle > MAX_MEDIAN
        or max(lengths) > MAX_LINE
        or len(set(lines)) < MIN_DISTINCT_SHARE * len(lines)
    ):
        return None
    shown = f"{len(lines):,}+" if len(head) == LIST_SNIFF_BYTES else f"{len(lines):,}"
    return (
        f"{path.name} reads as a list ({shown} short lines, median {middle:g} "
        "characters, none blank): trained as documents, one a line (data.documents=lines); "
        "--set data.documents=null trains it as one text"
    )
