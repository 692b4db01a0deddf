"""Generation: warm the state on a prime, then one recurrent step per new character.

The state is carried from step to step, so each character costs the same whatever the
sample length. Sampling works in log space (Gumbel-max over logits / T): no overflow at
any temperature. top-k and top-p cut the distribution before the draw. Several samples
are generated together as one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
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


class Sampler:
    """Draws one id per row of logits (batch, vocab) from softmax(logits / T), after the
    top-k and top-p cuts.

    Gumbel-max: argmax(logits / T + G) with G standard Gumbel noise is an exact draw from
    that softmax, computed entirely in log space: no exp, no normalisation, nothing to
    overflow. The noise is drawn in blocks, so a step costs a divide, an add and an argmax
    on a vector of a few hundred numbers; NumPy does that in microseconds, and it runs
    once per generated character."""

    BLOCK = 256  # steps of noise drawn at once

    def __init__(self, settings: SampleSettings, seed: int | None = None):
        self.s = settings
        self.rng = np.random.default_rng(seed)  # None: fresh entropy
        self._noise = np.empty((0,))
        self._used = 0

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        s = self.s
        if s.greedy:
            return logits.argmax(axis=-1)
        with np.errstate(over="ignore"):  # a tiny T sends logits to +-inf: the right limit
            x = logits.astype(np.float64) / s.temperature
        if s.top_k is not None and s.top_k < x.shape[-1]:
            kth = np.partition(x, -s.top_k, axis=-1)[:, -s.top_k, None]
            x = np.where(x < kth, -np.inf, x)
        if s.top_p is not None and s.top_p < 1.0:
            x = self._nucleus(x, s.top_p)
        if self._used == len(self._noise) or self._noise.shape[1:] != x.shape:
            self._noise = self.rng.gumbel(size=(self.BLOCK, *x.shape))
            self._used = 0
        self._used += 1
        return (x + self._noise[self._used - 1]).argmax(axis=-1)

    @staticmethod
    def _nucleus(x: np.ndarray, top_p: float) -> np.ndarray:
        """Keep the likeliest ids holding top_p of the mass (the likeliest always stays)."""
        order = np.argsort(-x, axis=-1, kind="stable")
        sorted_x = np.take_along_axis(x, order, axis=-1)
        with np.errstate(invalid="ignore", over="ignore"):
            probs = np.exp(sorted_x - sorted_x[:, :1])  # max-shifted: no overflow
            probs /= probs.sum(axis=-1, keepdims=True)
        # Drop an id when the ids ranked above it already hold top_p of the mass.
        sorted_x[(probs.cumsum(axis=-1) - probs) >= top_p] = -np.inf
        out = np.empty_like(x)
        np.put_along_axis(out, order, sorted_x, axis=-1)
        return out


class _SampleText:
    """One sample's text as it grows: decoding, the stop string, and what may be shown.

    Pieces are kept in a list (joined once at the end), so a long sample costs the same
    per character as a short one. Text that could be the start of the stop string is held
    back until it is not; the stop string is searched for in the generated text only."""

    def __init__(self, vocab: Vocab, prime: str, stop: str | None):
        self.decoder = vocab.stream_decoder()
        self.pieces = [prime]
        self.pending = ""
        self.stop = stop
        self.done = False

    def add(self, piece: str) -> str:
        """Take newly decoded text; return what is now safe to show."""
        if not self.stop:
            self.pieces.append(piece)
            return piece
        text = self.pending + piece
        hit = text.find(self.stop)
        if hit >= 0:
            shown, self.pending, self.done = text[:hit], "", True
        else:
            cut = len(text) - (len(self.stop) - 1)
            shown, self.pending = text[:cut], text[cut:]
        self.pieces.append(shown)
        return shown

    def finish(self) -> str:
        shown, self.pending = self.pending, ""
        self.pieces.append(shown)
        return shown

    @property
    def text(self) -> str:
        return "".join(self.pieces)


@contextmanager
def one_char_steps(device: torch.device):
    """oneDNN's CPU RNN re-packs its weights on every call, which dominates a step of one
    character; PyTorch's native kernel is about 1.5x faster there (bench/sampling.py)."""
    if device.type != "cpu":
        yield
        return
    enabled = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = enabled


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
    sampler = Sampler(settings, settings.seed)

    batch = settings.num_samples
    samples = [_SampleText(vocab, prime, settings.stop) for _ in range(batch)]
    if on_text and prime:
        for i in range(batch):
            on_text(i, prime)
    state = None
    if len(context) > 1:  # warm the state on all but the last prime character at once
        warm = torch.tensor(context[:-1], device=device).expand(batch, -1)
        _, state = model(warm, state)
    last = torch.full((batch, 1), context[-1], dtype=torch.long, device=device)
    # Text is decoded step by step only when someone watches it (streaming) or a stop
    # string may end it; otherwise the ids are kept and decoded once at the end.
    step_by_step = on_text is not None or settings.stop is not None
    drawn: list[np.ndarray] = []
    with one_char_steps(device):
        for _ in range(settings.length):
            logits, state = model(last, state)
            chosen = sampler(logits[:, -1].float().cpu().numpy())
            last = torch.from_numpy(chosen[:, None]).to(device)
            if not step_by_step:
                drawn.append(chosen)
                continue
            for i, token in enumerate(chosen.tolist()):
                sample = samples[i]
                if not sample.done:
                    piece = sample.add(sample.decoder.feed(token))
                    if on_text and piece:
                        on_text(i, piece)
            if settings.stop is not None and all(s.done for s in samples):
                break
    if drawn:
        for sample, row in zip(samples, np.stack(drawn, axis=1).tolist(), strict=True):
            sample.add("".join(map(sample.decoder.feed, row)))
    for i, sample in enumerate(samples):
        piece = sample.finish()
        if on_text and piece:
            on_text(i, piece)
    model.train(was_training)
    return [s.text for s in samples]
