"""No loops: a character model left to itself, greedy above all, falls into attractor
loops ("the the the", a line written again and again). Two remedies, per row:

- `--repetition-penalty P` (CTRL's rule, Keskar et al. 2019): the logit of every
  character seen in the last `--repetition-window` characters (prime included) is
  divided by P when positive and multiplied by P when negative, so P > 1 makes repeats
  less likely without forbidding them;
- `--no-repeat-ngram N`: a character that would complete a character n-gram already in
  the text (prime included) is never drawn (if every character would, the rule steps
  aside for that one draw: a sample never stalls). 0 turns it off.

Both change what is drawn, not how it is scored: reported log-probabilities stay the
model's own.
"""

from __future__ import annotations

import math

import torch

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

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        """(rows, vocab) logits with the penalty and the n-gram rule applied."""
        rows, vocab = logits.shape
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

    def add(self, ids: list[int]) -> None:
        """Each row's next id."""
        self.texts = [text + chr(i) for text, i in zip(self.texts, ids, strict=True)]

    def select(self, rows: list[int]) -> None:
        """Keep these rows, in this order (a beam search's survivors)."""
        self.texts = [self.texts[r] for r in rows]


def repetition_for(settings: SampleSettings, history: list[int], rows: int) -> Repetition | None:
    if settings.repetition_penalty is None and not settings.no_repeat_ngram:
        return None
    return Repetition(settings, history, rows)
