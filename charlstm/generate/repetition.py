"""What a draw's logits are adjusted by, per row: the rules against loops, OpenAI's
penalties and a caller's logit bias.

A character model left to itself, greedy above all, falls into attractor loops ("the
the the", a line written again and again). Two remedies:

- `--repetition-penalty P` (CTRL's rule, Keskar et al. 2019): the logit of every
  character seen in the last `--repetition-window` characters (prime included) is
  divided by P when positive and multiplied by P when negative, so P > 1 makes repeats
  less likely without forbidding them;
- `--no-repeat-ngram N`: a character that would complete a character n-gram already in
  the text (prime included) is never drawn (if every character would, the rule steps
  aside for that one draw: a sample never stalls). 0 turns it off.

OpenAI's `frequency_penalty` and `presence_penalty` (as its API defines them: a
character's logit minus frequency_penalty times the times it was generated so far,
minus presence_penalty once it was; the prime does not count) and `logit_bias` (added
to an id's logit at every draw) are applied here too, so every entry point has them.

All of them change what is drawn, not how it is scored: reported log-probabilities stay
the model's own.
"""

from __future__ import annotations

import math

import torch

from charlstm.errors import SettingsError
from charlstm.options import SampleSettings


class Repetition:
    """The texts so far of `rows` samples (each starting from `history`), and the
    logits they make of the model's. A text is kept as a string of one character per
    id (chr(id)): finding where the last n-1 ids stood before is then str.find, and a
    beam search's survivors share their texts without copying them."""

    def __init__(self, settings: SampleSettings, history: list[int], rows: int):
        self.penalty = settings.repetition_penalty
        self.window = settings.repetition_window
        self.n = settings.no_repeat_ngram
        self.texts = ["".join(map(chr, history))] * rows
        self.frequency, self.presence = settings.frequency_penalty, settings.presence_penalty
        self.bias = settings.logit_bias
        self.counts: torch.Tensor | None = None  # (rows, vocab): each id generated so far
        self.rows = rows

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        """(rows, vocab) logits with the penalties, the bias and the n-gram rule applied."""
        rows, vocab = logits.shape
        if self.frequency or self.presence:
            counts = self._counts(vocab).to(logits.device)
            logits = logits - counts * self.frequency - (counts > 0) * self.presence
        if self.bias:
            ids, biases = zip(*self.bias, strict=True)
            add = torch.zeros(vocab, dtype=logits.dtype)
            add[list(ids)] = torch.tensor(biases, dtype=logits.dtype)
            logits = logits + add.to(logits.device)
        if self.penalty is not None:
            seen = torch.zeros(rows, vocab, dtype=torch.bool)
            for r, text in enumerate(self.texts):
                seen[r, [ord(c) for c in set(text[-self.window :])]] = True
            seen = seen.to(logits.device)
            scaled = torch.where(logits > 0, logits / self.penalty, logits * self.penalty)
            logits = torch.where(seen, scaled, logits)
        if self.n:
            banned = torch.zeros(rows, vocab, dtype=torch.bool)
            for r, text in enumerate(self.texts):
                ids = self._completing(text)
                if ids and len(ids) < vocab:
                    banned[r, list(ids)] = True
            logits = logits.masked_fill(banned.to(logits.device), -math.inf)
        return logits

    def _completing(self, text: str) -> set[int]:
        """The ids that would complete an n-gram already in `text`."""
        if self.n == 1:
            return {ord(c) for c in text}
        tail = text[len(text) - self.n + 1 :]
        if len(tail) < self.n - 1:
            return set()
        found, at = set(), text.find(tail)
        while at + len(tail) < len(text):  # the last occurrence is the tail itself
            found.add(ord(text[at + len(tail)]))
            at = text.find(tail, at + 1)
        return found

    def _counts(self, vocab: int) -> torch.Tensor:
        if self.counts is None:
            self.counts = torch.zeros(self.rows, vocab)
        return self.counts

    def add(self, ids: list[int]) -> None:
        """Each row's next id."""
        self.texts = [text + chr(i) for text, i in zip(self.texts, ids, strict=True)]
        if self.counts is not None:
            self.counts[torch.arange(len(ids)), torch.tensor(ids)] += 1

    def select(self, rows: list[int]) -> None:
        """Keep these rows, in this order (a beam search's survivors)."""
        self.texts = [self.texts[r] for r in rows]
        if self.counts is not None:
            self.counts = self.counts[torch.tensor(rows, dtype=torch.long)]
        self.rows = len(rows)


def repetition_for(settings: SampleSettings, history: list[int], rows: int) -> Repetition | None:
    s = settings
    if (
        s.repetition_penalty is None
        and not s.no_repeat_ngram
        and not s.logit_bias
        and not (s.frequency_penalty or s.presence_penalty)
    ):
        return None
    return Repetition(settings, history, rows)


def check_logit_bias(settings: SampleSettings, vocab_size: int) -> None:
    """A logit bias names this model's character ids (0..vocab_size-1)."""
    outside = [i for i, _ in settings.logit_bias if i >= vocab_size]
    if outside:
        raise SettingsError(
            f"`logit_bias`: {outside[0]} is no character id of this model (ids 0..{vocab_size - 1})"
        )
