"""Features of a text that units can be compared with: where string literals and comments
are, bracket depth, indentation, position in the line, line starts, and any regex.

Strings and comments depend on the language, picked from the file's extension or
`--language`: Python (# comments; '...', "...", and triple-quoted strings) or the C
family (C, C++, Java, JavaScript, Go, Rust: // and /* */ comments, "..." strings, '...'
character literals (strings in JavaScript), and `...` strings in JavaScript and Go).
A character inside a comment is in no string literal, and a quote inside a string
opens no comment.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from charlstm.errors import CharlstmError

LANGUAGES = ("python", "c", "cpp", "java", "javascript", "go", "rust")
EXTENSIONS = {
    ".py": "python", ".pyw": "python", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp",
    ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".java": "java", ".js": "javascript",
    ".mjs": "javascript", ".jsx": "javascript", ".ts": "javascript", ".tsx": "javascript",
    ".go": "go", ".rs": "rust",
}  # fmt: skip


def check_language(language: str) -> str:
    if language not in LANGUAGES:
        raise CharlstmError(f"--language must be one of {', '.join(LANGUAGES)} (got {language!r})")
    return language


def language_of(path: Path | None, given: str | None = None) -> str:
    """--language if given, else from the file's extension, else Python."""
    if given is not None:
        return check_language(given)
    return EXTENSIONS.get(path.suffix.lower(), "python") if path is not None else "python"


def strings_and_comments(text: str, language: str = "python") -> tuple[np.ndarray, np.ndarray]:
    """Two masks over the text: inside a string literal (quotes included) and inside a
    comment (its markers included). Backslash escapes are honoured in strings."""
    strings = np.zeros(len(text), dtype=np.float32)
    comments = np.zeros(len(text), dtype=np.float32)
    c_family = language != "python"
    quotes = ("'", '"') + (("`",) if language in ("javascript", "go") else ())
    pos = 0
    while pos < len(text):
        char = text[pos]
        if (not c_family and char == "#") or text.startswith("//", pos) and c_family:
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            comments[pos:end] = 1
            pos = end
        elif c_family and text.startswith("/*", pos):
            end = text.find("*/", pos + 2)
            end = len(text) if end < 0 else end + 2
            comments[pos:end] = 1
            pos = end
        elif char in quotes:
            end = _string_end(text, pos, c_family, char_literals=language != "javascript")
            if end is None:  # a lone quote (a Rust lifetime, say): not a literal
                pos += 1
                continue
            strings[pos:end] = 1
            pos = end
        else:
            pos += 1
    return strings, comments


def _string_end(text: str, start: int, c_family: bool, char_literals: bool) -> int | None:
    """Where the literal opened at `start` ends (just past its closing quote)."""
    char = text[start]
    quote = char * 3 if not c_family and text.startswith(char * 3, start) else char
    if c_family and char_literals and char == "'":  # a character: 'x' or '\n', no longer
        found = re.match(r"'(\\.[^']{0,8}|[^'\\\n])'", text[start : start + 12])
        return start + found.end() if found else None
    pos = start + len(quote)
    multiline = len(quote) == 3 or char == "`"
    while pos < len(text):
        if text[pos] == "\\":
            pos += 2
        elif text.startswith(quote, pos):
            return pos + len(quote)
        elif text[pos] == "\n" and not multiline:
            return pos  # an unterminated one-line string ends with its line
        else:
            pos += 1
    return len(text)


def builtin_features(text: str, language: str = "python") -> dict[str, np.ndarray]:
    strings, comments = strings_and_comments(text, language)
    depth = np.zeros(len(text), dtype=np.float32)
    indent = np.zeros(len(text), dtype=np.float32)
    column = np.zeros(len(text), dtype=np.float32)
    after_newline = np.zeros(len(text), dtype=np.float32)
    level = 0
    line_start = 0
    for pos, char in enumerate(text):
        if not strings[pos] and not comments[pos]:
            level += char in "([{"
            level = max(0, level - (char in ")]}"))
        depth[pos] = level
        if pos == line_start:
            after_newline[pos] = 1
            end = text.find("\n", line_start)
            line = text[line_start : end if end >= 0 else len(text)]
            width = len(line) - len(line.lstrip(" \t"))
        indent[pos] = width
        column[pos] = pos - line_start
        if char == "\n":
            line_start = pos + 1
    return {
        "string literal": strings,
        "comment": comments,
        "bracket depth": depth,
        "indentation": indent,
        "position in line": column,
        "after newline": after_newline,
    }


def regex_feature(text: str, pattern: str) -> np.ndarray:
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise CharlstmError(
            f"--feature: {pattern!r} is not a regular expression ({error})"
        ) from None
    inside = np.zeros(len(text), dtype=np.float32)
    for match in compiled.finditer(text):
        inside[match.start() : match.end()] = 1
    return inside


def parse_feature(spec: str, text: str) -> tuple[str, np.ndarray]:
    name, sep, pattern = spec.partition("=")
    if not sep or not name or not pattern:
        raise CharlstmError(f"--feature takes name=REGEX (got {spec!r})")
    return name, regex_feature(text, pattern)
