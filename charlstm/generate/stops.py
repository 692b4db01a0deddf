"""Stop strings: where a text ends, and how much of it may be shown before that is known.

Sampling (generate/sample.py), search (generate/search.py) and the server's engine
(serve/engine.py) all end a text the same way: at the first place any stop string
begins, with the stop string itself left out. Text that may still be the beginning of a
stop string is held back until the next characters say it is not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from charlstm.data.vocab import Vocab

# the longest UTF-8 encoding of one character: a byte model needs this many ids for it
UTF8_MAX_BYTES = 4


class StopStrings:
    """Stop strings (empty ones ignored): the earliest match in a text wins."""

    def __init__(self, stops: Iterable[str] | str | None):
        stops = (stops,) if isinstance(stops, str) else tuple(stops or ())
        self.stops: tuple[str, ...] = tuple(s for s in stops if s)
        # characters at the end of a text that may begin a stop string
        self.hold = max((len(s) for s in self.stops), default=1) - 1

    def __bool__(self) -> bool:
        return bool(self.stops)

    def __iter__(self):
        return iter(self.stops)

    def find(self, text: str) -> int:
        """Where the first stop string in `text` begins, or -1."""
        found = [at for at in (text.find(s) for s in self.stops) if at >= 0]
        return min(found, default=-1)

    def release(self, pending: str) -> tuple[int, bool]:
        """Of text held back so far: how many characters are now final, and whether the
        text ends there (a stop string begins right after them)."""
        at = self.find(pending)
        if at >= 0:
            return at, True
        return max(0, len(pending) - self.hold), False

    def cut(self, text: str) -> tuple[str, bool]:
        """The text before its first stop string, and whether there was one."""
        at = self.find(text)
        return (text, False) if at < 0 else (text[:at], True)

    def tail_ids(self, vocab: Vocab) -> int:
        """How many of a text's last ids to decode to see a stop string that ends with
        the last one (a byte model's characters take up to four ids each)."""
        longest = self.hold + 1
        if vocab.mode == "byte":
            return longest * UTF8_MAX_BYTES + UTF8_MAX_BYTES - 1
        return longest

    def ended(self, vocab: Vocab, ids: Sequence[int]) -> bool:
        """Whether a stop string has appeared in the text of `ids`, checked after each new
        id: only the end can hold one that was not there a step before."""
        return self.find(vocab.decode(ids[-self.tail_ids(vocab) :])) >= 0
