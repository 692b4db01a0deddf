"""Find more like this (LSTMVis's match): the units that switch on over a stretch of
text, and the other stretches where the same units are on together.

`charlstm inspect --find TEXT` takes the first occurrence of TEXT in the inspected text,
selects the units whose h stays above THRESHOLD across all of it and was not above it
just before (they switched on for it), then scores every position by the fraction of
those units on there. Maximal runs where at least MIN_SHARE of them are on are the
matches, ranked by how many of the units are on, on average (a span shorter than the
query in proportion to its length), then by length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charlstm.errors import CharlstmError
from charlstm.inspect.activations import Activations

THRESHOLD = 0.3  # h above this is "on"
MIN_SHARE = 0.8  # a match has at least this share of the selected units on
CONTEXT = 20  # characters shown on each side of a match


@dataclass(frozen=True)
class Match:
    start: int  # first character of the span
    end: int  # one past its last
    score: float  # mean share of the selected units on over the span
    before: str
    text: str
    after: str


@dataclass(frozen=True)
class Found:
    query: str
    start: int  # where the query was found
    units: list[tuple[int, int]]  # (layer, unit) selected
    matches: list[Match]

    def to_dict(self) -> dict:
        return {
            "query": self.query,
            "start": self.start,
            "units": [list(u) for u in self.units],
            "matches": [vars(m) for m in self.matches],
        }


def find_like(acts: Activations, query: str, limit: int = 20) -> Found:
    text = "".join(acts.chars)
    start = text.find(query)
    if not query or start < 0:
        raise CharlstmError(f"--find: {query!r} does not occur in the inspected text")
    end = start + len(query)
    h = acts.values["h"]  # (time, layers, units)
    on = h > THRESHOLD
    held = on[start:end].all(axis=0)
    if start > 0:
        held &= ~on[start - 1]
    layers, units = np.nonzero(held)
    chosen = list(zip(layers.tolist(), units.tolist(), strict=True))
    if not chosen:
        raise CharlstmError(
            f"--find: no unit switches on for {query!r} and stays on across it "
            f"(h > {THRESHOLD}); try a longer or more distinctive stretch"
        )
    share = on[:, layers, units].mean(axis=1)
    matches = []
    for a, b in _runs(share >= MIN_SHARE):
        if a < end and b > start:  # the query itself
            continue
        matches.append(
            Match(
                a,
                b,
                float(share[a:b].mean()),
                text[max(0, a - CONTEXT) : a],
                text[a:b],
                text[b : b + CONTEXT],
            )  # fmt: skip
        )
    # Most units on together first; a span shorter than the query counts for less.
    matches.sort(
        key=lambda m: (-m.score * min(1.0, (m.end - m.start) / len(query)), -(m.end - m.start))
    )
    return Found(query, start, chosen, matches[:limit])


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each maximal run of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))  # fmt: skip
