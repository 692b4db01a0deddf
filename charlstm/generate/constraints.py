"""Constraints that always hold: text of a given form, drawn without ever being thrown
away.

A pattern (`--regex`, and `--contains`, `--ends-with` made into patterns) becomes a
finite automaton over the model's own alphabet, through interegular (the regex-to-
automaton library outlines and vLLM use): one state per place in the pattern, one
transition per character of the vocabulary. Before each draw the characters that would
make a full match impossible are masked: those leading to a dead state, and those after
which no path to a final state fits the characters left (`--min-length` and
`--max-length`/`--length` bound them). A document model's end is allowed exactly where
the text so far is a full match; a text model's sample ends early only there, when no
character can go on. `--allow` and `--ban` mask generated characters outright (the
prime may hold any). What an automaton may cost is bounded in automaton.py.

Masked sampling is not rejection sampling: it draws each character from the model's
distribution renormalised over what can still match, which favours texts whose early
characters the model likes; rejection sampling (draw freely, keep what matches) gives
the model's distribution conditioned on the whole match, at the cost of draws that may
never succeed. Patterns are read as Python's `re` with DOTALL: `.` matches a newline,
so `--regex '.*'` changes nothing. The whole text of a sample, prime included, is what
must match.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from charlstm.data.vocab import Vocab
from charlstm.errors import CharlstmError
from charlstm.generate.automaton import TooComplex, build_automaton
from charlstm.options import SampleSettings

# Characters one constrained sample may have: the automaton's table of which lengths
# can still finish a match from each state is this wide.
MAX_CONSTRAINED_CHARS = 10_000
# States times characters: the table of lengths that can still finish (int32: 80 MB).
MAX_TABLE_CELLS = 20_000_000


def patterns_of(settings: SampleSettings) -> list[tuple[str, str]]:
    """(pattern, the option it came from) for each pattern the settings ask for: the
    text must match all of them."""
    found = []
    if settings.regex is not None:
        found.append((settings.regex, f"--regex {settings.regex!r}"))
    found += [(f".*{re.escape(word)}.*", f"--contains {word!r}") for word in settings.contains]
    if settings.ends_with is not None:
        found.append((f".*{re.escape(settings.ends_with)}", "--ends-with"))
    return found


class Constraint:
    """Tables the sampler masks with, on the logits' device: for each state, where each
    vocabulary id leads, and which numbers of further characters can end in a match."""

    def __init__(self, vocab: Vocab, settings: SampleSettings, device: torch.device):
        if vocab.mode == "byte":
            raise CharlstmError(
                "constraints (--regex, --contains, ...) need a char model: a byte model's "
                "ids are not characters"
            )
        self.vocab = vocab
        self.what = ", ".join(what for _, what in patterns_of(settings)) or "the constraints"
        self.low = settings.min_length or 0  # characters generated, at least
        self.high = min(settings.length, settings.max_length or settings.length)
        if self.high > MAX_CONSTRAINED_CHARS:
            raise CharlstmError(
                f"a constrained sample has at most {MAX_CONSTRAINED_CHARS:,} characters "
                f"(--length or --max-length; got {self.high:,})"
            )
        nxt, finals, initial = self._table(vocab, settings)
        if len(nxt) * (self.high + 1) > MAX_TABLE_CELLS:
            raise TooComplex(
                f"{self.what}: {len(nxt):,} automaton states over {self.high:,} characters "
                f"is more than a constrained sample may hold; a shorter --length or a "
                "simpler pattern"
            )
        self.initial = initial
        columns = np.ones(vocab.size, dtype=bool)
        for i in vocab.special_ids:
            columns[i] = False  # the end is allowed by the rule below, never by a column
        for char in settings.ban or "":
            if vocab.id_of(char) is not None:
                columns[vocab.id_of(char)] = False
        if settings.allow is not None:
            allowed = {vocab.id_of(c) for c in settings.allow}
            columns &= np.array([i in allowed for i in range(vocab.size)])
        self.prime_next = nxt.copy()  # the prime is read past --allow/--ban: they rule
        nxt[:, ~columns] = -1  # what is generated, not what is given
        # can[s, k]: from state s, some k more characters end in a final state
        can = np.zeros((len(nxt), self.high + 1), dtype=bool)
        can[:, 0] = finals
        valid = nxt >= 0
        safe = np.where(valid, nxt, 0)
        for k in range(1, self.high + 1):
            can[:, k] = (can[safe, k - 1] & valid).any(axis=1)
        # counts of True in can[s, :k], to ask "any k in [lo, hi]" in one subtraction
        cum = np.concatenate([np.zeros((len(nxt), 1), dtype=np.int32),
                              np.cumsum(can, axis=1, dtype=np.int32)], axis=1)  # fmt: skip
        self.next = torch.as_tensor(nxt, device=device)
        self.final = torch.as_tensor(finals, device=device)
        self.cum = torch.as_tensor(cum, device=device)
        self.end = vocab.end_id

    @staticmethod
    def _table(vocab: Vocab, settings: SampleSettings):
        """The automaton as arrays over vocabulary ids: next[s, id] (-1: no match goes
        on), finals[s], and the initial state."""
        patterns = patterns_of(settings)
        if not patterns:  # --allow/--ban/--min-length alone: one state, always final
            return np.zeros((1, vocab.size), dtype=np.int64), np.ones(1, dtype=bool), 0
        alphabet = tuple(
            None if i in vocab.special_ids else vocab.decode([i]) for i in range(vocab.size)
        )
        nxt, finals, initial = build_automaton(
            patterns, alphabet, lambda fsm: _arrays(fsm, alphabet)
        )
        return nxt.copy(), finals, initial  # the cached table stays as built

    def start(self, prime_ids: list[int], rows: int) -> torch.Tensor:
        """Each row's state after the prime; one line when no match can begin with it or
        none fits the length asked for."""
        state = self.initial
        for i in prime_ids:
            state = int(self.prime_next[state, i]) if i not in self.vocab.special_ids else state
            if state < 0:
                raise CharlstmError(f"{self.what}: the prime cannot begin a text that matches")
        if int(self.cum[state, self.high + 1] - self.cum[state, min(self.low, self.high + 1)]) == 0:
            raise CharlstmError(
                f"{self.what}: no text of {self.low}..{self.high} characters over the model's "
                "alphabet matches (after the prime); check the pattern, --allow/--ban and the "
                "lengths"
            )
        return torch.full((rows,), state, dtype=torch.long, device=self.next.device)

    def allowed(self, states: torch.Tensor, made: int) -> torch.Tensor:
        """(rows, vocab) bool: what each row may draw after `made` characters."""
        lo = max(self.low - made - 1, 0)  # characters still to come after this one
        hi = self.high - made - 1
        nxt = self.next[states]  # (rows, vocab)
        if hi < 0:
            ok = torch.zeros_like(nxt, dtype=torch.bool)
        else:
            target = nxt.clamp(min=0)
            ok = (nxt >= 0) & ((self.cum[target, hi + 1] - self.cum[target, min(lo, hi + 1)]) > 0)
        if self.end is not None:
            ok[:, self.end] = self.final[states] & (made >= self.low)
        return ok

    def advance(self, states: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """Each row's state after its drawn id (a row whose id leads nowhere, one that
        has ended, keeps its state)."""
        after = self.next[states, chosen.clamp(min=0)]
        return torch.where(after >= 0, after, states)


def _arrays(fsm, alphabet: tuple[str | None, ...]):
    """The automaton as arrays over vocabulary ids (None: a special id, no column)."""
    states = sorted(fsm.states)
    index = {s: k for k, s in enumerate(states)}
    nxt = np.full((len(states), len(alphabet)), -1, dtype=np.int64)
    for i, char in enumerate(alphabet):
        if char is None:
            continue
        symbol = fsm.alphabet[char]
        for s in states:
            target = fsm.map[s].get(symbol)
            if target is not None:
                nxt[index[s], i] = index[target]
    finals = np.array([s in fsm.finals for s in states], dtype=bool)
    return nxt, finals, index[fsm.initial]


def constraint_for(vocab: Vocab, settings: SampleSettings, device) -> Constraint | None:
    """The constraint the settings ask for, or None (then sampling is as it always was)."""
    asked = (settings.regex, settings.ends_with, settings.allow, settings.ban,
             settings.min_length, settings.max_length)  # fmt: skip
    if settings.contains or any(a is not None for a in asked):
        return Constraint(vocab, settings, device)
    return None
