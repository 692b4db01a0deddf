"""Generation: warm the state on a prime, then one recurrent step per new character.

The state is carried from step to step, so each character costs the same whatever the
sample length. Sampling works in log space (Gumbel-max over logits / T): no overflow at
any temperature. top-k and top-p cut the distribution before the draw. Several samples
are generated together as one batch.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

from charlstm import interrupt
from charlstm.data.vocab import Vocab
from charlstm.generate.constraints import constraint_for
from charlstm.generate.context import prime_context, warm_state
from charlstm.generate.repetition import repetition_for
from charlstm.generate.stops import StopStrings
from charlstm.model import CharRNN, evaluating
from charlstm.options import SampleSettings

# -- Gumbel noise from a counter-based hash --------------------------------------------
# The noise number for (a row's key, a step, an id) is a hash of the three (splitmix64's
# finaliser over a Weyl sequence: key + counter * GAMMA), so any rows' noise for any
# steps comes out of one vectorised computation: a batch of streams with their own seeds
# draws in one go, and each row's text is still what its seed gives it alone. It is
# made on the host in NumPy (whose small operations cost a third of torch's on a CPU)
# and the same on every machine; 23 bits make a float32 uniform.
_M64 = (1 << 64) - 1
_GAMMA = 0x9E3779B97F4A7C15
_MIX1, _MIX2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_STEP_STRIDE = 1 << 24  # counter = step * stride + id: vocabularies under 16 M ids


def _mix_int(z: int) -> int:
    z &= _M64
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    return z ^ (z >> 31)


def row_key(seed: int, row: int) -> int:
    """The key of row `row` of a draw seeded `seed` (a 64-bit pattern)."""
    return _mix_int(_mix_int(seed * _GAMMA + _GAMMA) + row * _GAMMA)


def gumbel_noise(keys: np.ndarray, steps: np.ndarray, vocab_size: int) -> np.ndarray:
    """Standard Gumbel noise, float32, shaped broadcast(keys, steps) + (vocab_size,) (both
    uint64): the number at [..., i] is a function of (key, step, i) alone."""
    z = (steps * np.uint64(_STEP_STRIDE))[..., None] + np.arange(vocab_size, dtype=np.uint64)
    z *= np.uint64(_GAMMA)  # uint64 arithmetic wraps, as the hash wants
    z = z + keys[..., None]
    z ^= z >> np.uint64(30)
    z *= np.uint64(_MIX1)
    z ^= z >> np.uint64(27)
    z *= np.uint64(_MIX2)
    z ^= z >> np.uint64(31)
    uniform = (z >> np.uint64(41)).astype(np.float32)  # 23 bits: m + 0.5 is exact
    uniform += 0.5
    uniform *= 2.0**-23  # in (0, 1), never 0 or 1
    np.log(uniform, out=uniform)
    np.negative(uniform, out=uniform)
    np.log(uniform, out=uniform)
    return np.negative(uniform, out=uniform)


class Sampler:
    """Draws one id per row of logits (..., vocab) from softmax(logits / T), after the
    top-k and top-p cuts, on the logits' own device: ids shaped (...).

    Gumbel-max: argmax(logits / T + G), with G standard Gumbel noise, is an exact draw
    from that softmax; multiplying through by T > 0 keeps the argmax, so a step costs one
    add and one argmax of logits + T * G, with no exp, no normalisation and nothing to
    overflow (a tiny T gives greedy decoding, its limit). The noise of row r at step t
    is gumbel_noise's hash of (row_key(seed, r), t): the same seed gives the same text
    every time, alone or batched beside other seeds (draw_rows), on the same kind of
    device. A sampler without a seed takes a fresh one from the system's entropy."""

    BLOCK_NUMBERS = 1 << 16  # noise numbers made at once,
    BLOCK_STEPS = 256  # but never more steps' worth than this
    # Beyond this T the draw is uniform to float32 precision anyway; it keeps T * G finite.
    MAX_SCALE = 1e36

    def __init__(self, settings: SampleSettings):
        self.s = settings
        self.seed = settings.seed if settings.seed is not None else secrets.randbits(63)
        self.key = row_key(self.seed, 0)  # a one-row draw's key (draw_rows)
        self.scale = 0.0 if settings.greedy else min(settings.temperature, self.MAX_SCALE)
        self.step = 0  # draws made so far
        self._block: tuple[torch.Tensor, ...] = ()  # T * G for the steps from _block_start
        self._block_start = 0

    def __call__(self, logits: torch.Tensor, allowed: torch.Tensor | None = None) -> torch.Tensor:
        """`allowed` (rows, vocab), from a Constraint: only those ids can be drawn."""
        if allowed is not None:
            logits = logits.masked_fill(~allowed.view(logits.shape), -math.inf)
        if self.s.greedy:
            return logits.argmax(dim=-1)
        x = self.cut(logits.float())
        return (x + self.next_noise(x.shape, x.device)).argmax(dim=-1)

    def cuts(self, vocab_size: int) -> bool:
        """Whether a draw cuts the distribution (top-k, top-p) before the noise is added
        (a greedy draw takes the likeliest id, cut or not)."""
        s = self.s
        top_k = s.top_k is not None and s.top_k < vocab_size
        return not s.greedy and (top_k or (s.top_p is not None and s.top_p < 1.0))

    def cut(self, x: torch.Tensor) -> torch.Tensor:
        """float32 logits with the ids top-k and top-p leave out set to -inf."""
        s = self.s
        if s.top_k is not None and s.top_k < x.shape[-1]:
            kth = x.topk(s.top_k, dim=-1).values[..., -1:]
            x = x.masked_fill(x < kth, -math.inf)
        if s.top_p is not None and s.top_p < 1.0:
            x = self._nucleus(x, s.top_p, s.temperature)
        return x

    def next_noise(self, shape: torch.Size, device: torch.device) -> torch.Tensor:
        """T * G for this step's draw, float32, shaped `shape` (rows first, ids last),
        made a block of steps at a time."""
        at = self.step - self._block_start
        if at >= len(self._block) or self._block[0].shape != shape:
            rows = shape.numel() // shape[-1]
            keys = np.array([row_key(self.seed, r) for r in range(rows)], dtype=np.uint64)
            count = max(1, min(self.BLOCK_STEPS, self.BLOCK_NUMBERS // shape.numel()))
            steps = np.arange(self.step, self.step + count, dtype=np.uint64)[:, None]
            block = torch.from_numpy(gumbel_noise(keys, steps, shape[-1])).to(device)
            # a list of per-step views: taking the next one costs no tensor operation
            self._block = block.mul_(self.scale).view(count, *shape).unbind(0)
            self._block_start, at = self.step, 0
        self.step += 1
        return self._block[at]

    @staticmethod
    def _nucleus(x: torch.Tensor, top_p: float, temperature: float) -> torch.Tensor:
        """Keep the likeliest ids holding top_p of the mass at this temperature (the
        likeliest always stays)."""
        sorted_x, order = x.sort(dim=-1, descending=True, stable=True)
        # shifted by the max before dividing: the exponent is <= 0, so nothing overflows
        probs = ((sorted_x - sorted_x[..., :1]) / temperature).exp()
        probs /= probs.sum(dim=-1, keepdim=True)
        # Drop an id when the ids ranked above it already hold top_p of the mass.
        sorted_x = sorted_x.masked_fill((probs.cumsum(dim=-1) - probs) >= top_p, -math.inf)
        return torch.empty_like(x).scatter_(-1, order, sorted_x)


def draw_rows(logits: torch.Tensor, samplers: Sequence[Sampler]) -> torch.Tensor:
    """One id per row of logits (rows, 1, vocab): row i is exactly what samplers[i] draws
    from logits[i : i + 1] alone (so a seeded text does not depend on its neighbours),
    shaped (rows, 1). Every row's noise is one hash over all rows' keys and steps, then
    one add and one argmax; a greedy row's noise is scaled to nothing, and rows that cut
    the distribution (top-k, top-p) are cut one by one first."""
    if len(samplers) == 1:  # the same draw, from the sampler's block of noise
        return samplers[0](logits)
    device = logits.device
    vocab_size = logits.shape[-1]
    x = logits.float()
    cut = [i for i, s in enumerate(samplers) if s.cuts(vocab_size)]
    if cut:
        x = x.clone()  # .float() of float32 logits is the caller's own tensor
        for i in cut:
            x[i : i + 1] = samplers[i].cut(x[i : i + 1])
    keys = np.fromiter((s.key for s in samplers), np.uint64, len(samplers))
    steps = np.fromiter((s.step for s in samplers), np.uint64, len(samplers))
    noise = gumbel_noise(keys, steps, vocab_size)
    noise *= np.fromiter((s.scale for s in samplers), np.float32, len(samplers))[:, None]
    for sampler in samplers:
        sampler.step += 1
    return (x + torch.from_numpy(noise).to(device).view(x.shape)).argmax(dim=-1)


class _SampleText:
    """One sample's text as it grows: decoding, the stop string, and what may be shown.

    Text that could be the start of the stop string is held back until it is not
    (generate/stops.py); the stop string is searched for in the generated text only. The
    caller keeps the pieces shown (joined once at the end), so a long sample costs the
    same per character as a short one."""

    def __init__(self, vocab: Vocab, stops: StopStrings):
        self.decoder = vocab.stream_decoder()
        self.pending = ""
        self.stops = stops
        self.done = False

    def add(self, piece: str) -> str:
        """Take newly decoded text; return what is now safe to show."""
        if not self.stops:
            return piece
        text = self.pending + piece
        final, self.done = self.stops.release(text)
        self.pending = "" if self.done else text[final:]
        return text[:final]

    def finish(self) -> str:
        shown, self.pending = self.pending, ""
        return shown


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


def _read_back_every(device: torch.device, watched: bool) -> int:
    """Steps between reads of the drawn ids back to the host. Each read waits for the
    device, so an accelerator reads in blocks of 32 (a fraction of a millisecond of text
    at a time), a CPU every step while someone watches the text or a stop string may end
    it, and otherwise once, at the end."""
    if not watched:
        return 1 << 62
    return 1 if device.type == "cpu" else 32


def draw_texts(
    model: CharRNN,
    vocab: Vocab,
    prime: str,
    settings: SampleSettings,
    on_text: Callable[[int, str], None] | None = None,
) -> list[str]:
    """Generate `num_samples` texts, each beginning with the prime (minus skipped
    characters). `on_text(sample_index, piece)` receives text as soon as it is final."""
    texts: list[list[str]] = [[] for _ in range(settings.num_samples)]
    for i, piece in iter_samples(model, vocab, prime, settings, watched=on_text is not None):
        texts[i].append(piece)
        if on_text is not None:
            on_text(i, piece)
    return ["".join(pieces) for pieces in texts]


@torch.no_grad()
def iter_samples(
    model: CharRNN, vocab: Vocab, prime: str, settings: SampleSettings, watched: bool = True
) -> Iterator[tuple[int, str]]:
    """(sample index, piece) as each piece of text becomes final, the prime first; the
    pieces of a sample joined are its text. Unwatched, the drawn ids are read back from
    an accelerator once, at the end (see _read_back_every)."""
    device = next(model.parameters()).device
    with evaluating(model):
        prime, context = prime_context(vocab, prime, settings.unknown)
        sampler, batch, stops = Sampler(settings), settings.num_samples, StopStrings(settings.stop)
        samples = [_SampleText(vocab, stops) for _ in range(batch)]
        constraint = constraint_for(vocab, settings, device)
        if constraint is not None:
            states = constraint.start(vocab.encode(prime).tolist(), batch)
        repetition = repetition_for(settings, vocab.encode(prime).tolist(), batch)
        # a constraint knows which rows have ended every step; a repetition rule reads
        # each drawn id; a stop string is looked for in each piece
        watched = watched or constraint is not None or repetition is not None or bool(stops)
        yield from ((i, prime) for i in range(batch) if prime)
        state = warm_state(model, context, batch)
        last = torch.full((batch, 1), context[-1], dtype=torch.long, device=device)
        every = _read_back_every(device, watched)
        pending: list[torch.Tensor] = []
        for step in range(settings.length):
            interrupt.check("sampling")
            with one_char_steps(device):
                logits, state = model(last, state)  # (batch, 1, vocab)
            if repetition is not None:
                logits = repetition.adjust(logits[:, -1])[:, None]
            allowed = None
            if constraint is not None:
                allowed = constraint.allowed(states, step)
                # waits for the device: a row that cannot go on is a whole match, ended
                for sample, open_ in zip(samples, allowed.any(dim=1).tolist(), strict=True):
                    sample.done = sample.done or not open_
                if all(s.done for s in samples):
                    break
            last = sampler(logits, allowed)  # (batch, 1), drawn on the device: the next input
            if constraint is not None:
                states = constraint.advance(states, last[:, 0])
            if repetition is not None:
                repetition.add(last[:, 0].tolist())  # waits for the device
            pending.append(last)
            if len(pending) < every and step < settings.length - 1:
                continue
            # waits for the device: the drawn ids come back to be decoded
            rows = (pending[0] if every == 1 else torch.cat(pending, dim=1)).tolist()
            pending.clear()
            for i, (sample, row) in enumerate(zip(samples, rows, strict=True)):
                if not sample.done:
                    piece = sample.add("".join(map(sample.decoder.feed, row)))
                    if piece:
                        yield i, piece
            if stops and all(s.done for s in samples):
                break
        for i, sample in enumerate(samples):
            piece = sample.finish()
            if piece:
                yield i, piece
