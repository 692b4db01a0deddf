"""Generation: warm the state on a prime, then one recurrent step per new character.

The state is carried from step to step, so each character costs the same whatever the
sample length. Sampling works in log space (log_softmax of logits / T): no overflow at
low temperatures. top-k and top-p cut the distribution before the draw. Several samples
are generated together as one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from charlstm.errors import CharlstmError
from charlstm.model import CharRNN
from charlstm.vocab import Vocab


@dataclass(frozen=True)
class SampleSettings:
    length: int = 500
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    seed: int | None = None
    num_samples: int = 1
    stop: str | None = None  # a sample ends where this first appears (not included)
    unknown: str = "error"  # prime characters outside the vocabulary: "error" or "skip"

    def __post_init__(self) -> None:
        checks = [
            (self.length >= 0, f"--length must be >= 0 (got {self.length})"),
            (self.temperature > 0, f"--temperature must be > 0 (got {self.temperature})"),
            (self.top_k is None or self.top_k >= 1, f"--top-k must be >= 1 (got {self.top_k})"),
            (
                self.top_p is None or 0 < self.top_p <= 1,
                f"--top-p must be in (0, 1] (got {self.top_p})",
            ),
            (self.num_samples >= 1, f"--num-samples must be >= 1 (got {self.num_samples})"),
            (
                self.unknown in ("error", "skip"),
                f"--unknown must be error or skip (got {self.unknown!r})",
            ),
            (self.stop is None or self.stop != "", "--stop must not be empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise CharlstmError(message)


def next_ids(logits: torch.Tensor, s: SampleSettings, generator: torch.Generator) -> torch.Tensor:
    """Draw one id per row of `logits` (batch, vocab)."""
    if s.greedy:
        return logits.argmax(dim=-1)
    # Shifting by the max first keeps every scaled logit <= 0, and float64 keeps tiny
    # temperatures from rounding to 0: no overflow or NaN at any temperature.
    logits = logits.double()
    logp = torch.log_softmax((logits - logits.amax(dim=-1, keepdim=True)) / s.temperature, dim=-1)
    if s.top_k is not None and s.top_k < logp.shape[-1]:
        kth = logp.topk(s.top_k, dim=-1).values[:, -1:]
        logp = logp.masked_fill(logp < kth, float("-inf"))
    if s.top_p is not None and s.top_p < 1.0:
        sorted_logp, order = logp.sort(dim=-1, descending=True)
        probs = sorted_logp.exp()
        # Drop a token when the tokens ranked above it already hold top_p of the mass:
        # the most likely token always survives.
        drop = (probs.cumsum(dim=-1) - probs) >= s.top_p
        logp = logp.scatter(-1, order, sorted_logp.masked_fill(drop, float("-inf")))
    return torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)


class _SampleText:
    """One sample's text as it grows: decoding, the stop string, and what may be shown.

    Text that could be the start of the stop string is held back until it is not."""

    def __init__(self, vocab: Vocab, prime: str, stop: str | None):
        self.decoder = vocab.stream_decoder()
        self.text = prime
        self.shown = 0
        self.stop = stop
        self.done = False
        self._search_from = len(prime)

    def add(self, piece: str) -> str:
        self.text += piece
        if self.stop:
            hit = self.text.find(self.stop, self._search_from)
            if hit >= 0:
                self.text, self.done = self.text[:hit], True
                return self._show(len(self.text))
            self._search_from = max(self._search_from, len(self.text) - len(self.stop) + 1)
            return self._show(self._search_from)
        return self._show(len(self.text))

    def finish(self) -> str:
        return self._show(len(self.text))

    def _show(self, upto: int) -> str:
        piece, self.shown = self.text[self.shown : upto], max(self.shown, upto)
        return piece


def _line_start_id(vocab: Vocab) -> int:
    for char in ("\n", " "):
        found = vocab.id_of(char)
        if found is not None:
            return found
    return 0


@torch.no_grad()
def generate(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    settings: SampleSettings,
    on_text: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Generate `num_samples` texts, each beginning with the prime (minus skipped
    characters). `on_text(sample_index, piece)` receives text as soon as it is final."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    prime_ids = vocab.encode(prime, unknown=settings.unknown).tolist() if prime else []
    prime = vocab.decode(prime_ids)
    # Without a prime, condition on a newline (the start of a line), not shown.
    context = prime_ids or [_line_start_id(vocab)]
    generator = torch.Generator(device=device)
    if settings.seed is not None:
        generator.manual_seed(settings.seed)
    else:
        generator.seed()

    batch = settings.num_samples
    samples = [_SampleText(vocab, prime, settings.stop) for _ in range(batch)]
    for i, sample in enumerate(samples):
        if on_text and prime:
            on_text(i, sample.add(""))
    state = None
    if len(context) > 1:  # warm the state on all but the last prime character at once
        warm = torch.tensor(context[:-1], device=device).expand(batch, -1)
        _, state = model(warm, state)
    last = torch.full((batch, 1), context[-1], dtype=torch.long, device=device)
    for _ in range(settings.length):
        logits, state = model(last, state)
        chosen = next_ids(logits[:, -1], settings, generator)
        last = chosen[:, None]
        for i, token in enumerate(chosen.tolist()):
            sample = samples[i]
            if not sample.done:
                piece = sample.add(sample.decoder.feed(token))
                if on_text and piece:
                    on_text(i, piece)
        if all(s.done for s in samples):
            break
    for i, sample in enumerate(samples):
        piece = sample.finish()
        if on_text and piece:
            on_text(i, piece)
    model.train(was_training)
    return [s.text for s in samples]
