"""Continuous batching: every active stream is one row of one batched recurrent step.

A request becomes a Stream (its context ids, its own sampler with its own seed, its
length and stop rules). The engine is one task on the server's event loop: between two
steps it reads the primes of the streams that arrived (a bounded number of characters
per step, so a long prime delays no one else), joins those it has read, drops those
that finished or whose client went away, runs one step for all rows together, hands
each stream its text, and yields to the loop so that requests and responses move. An
LSTM's state is a fixed-size row per stream: joining and leaving cost a concatenation
and an index_select, not a recomputation.

Why not a thread of its own: two Python threads share one interpreter lock. With the
step in a second thread, every tensor operation let the busy event loop in and then
waited up to 5 ms for the lock, and 64 clients got half the characters per second
(bench/RESULTS.md 8). On one thread the step and the network take turns.

Each stream draws with its own seed on logits of its own row (sample.draw_rows: one hash
makes every row's noise from its seed and step, then one add and one argmax for all
rows): the same seed gives the same text whether the stream ran alone or beside others
(up to the float rounding of a batched matrix product, which leaves the draws alone);
a character's log-probability is worked out only when its request asked for them.

Text reaches a request in pieces: a stream's first characters at once (time to first
character), then what it made since at most every `interval` seconds: at 64 streams a
queue hop and an event per character, not the model, set the pace, and 20 ms pieces
look as live to a reader as single characters.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from charlstm.data.vocab import Vocab
from charlstm.generate.constraints import Constraint
from charlstm.generate.repetition import Repetition, repetition_for
from charlstm.generate.sample import Sampler, draw_rows, one_char_steps
from charlstm.generate.stops import StopStrings
from charlstm.model import CharRNN
from charlstm.options import SampleSettings


@dataclass
class Piece:
    text: str
    # one per character of `text` (the model's own, T = 1); empty unless Stream.log_probs
    log_probs: list[float]
    # with Stream.top: per character, the `top` likeliest alternatives {text: log-prob}
    top: list[dict[str, float]] | None = None


@dataclass
class Done:
    # "stop" (a stop string or a document's end), "length", "abort" (shutting down) or
    # "error" (the step it was in failed: `error` says how; the engine went on)
    finish_reason: str
    chars: int
    error: str | None = None


@dataclass(eq=False)
class Stream:
    context: list[int]  # ids the first draw is conditioned on (prime, or a start)
    settings: SampleSettings
    stops: StopStrings  # a tuple of strings is taken too
    # (index, Piece or Done) arrive here; the streams of one request may share a queue
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    index: int = 0  # which choice of its request
    request: str = ""  # its request's id, for the log
    top: int = 0  # alternatives given for each character (OpenAI's logprobs: N)
    log_probs: bool = True  # each character's log-probability (Piece.log_probs) is wanted
    # constraints (generate/constraints.py): checked when the request came, applied here
    constraint: Constraint | None = None
    cancelled: bool = False
    # the engine's own
    sampler: Sampler | None = None
    decoder: object = None
    produced: int = 0
    pending: str = ""  # decoded, held back while it may begin a stop string
    # per character, its log-probability (with `top`: and its alternatives, a pair)
    pending_lp: list = field(default_factory=list)
    ready: list[str] = field(default_factory=list)  # final, not yet handed over
    ready_lp: list = field(default_factory=list)
    hand_at: float = 0.0  # monotonic time of the next hand-over (0: at once)
    finish_reason: str | None = None
    warm_state: object = None  # the state after the prime read so far
    warmed: int = 0  # prime characters read
    matched: torch.Tensor | None = None  # the constraint's state, (1,)
    # penalties and logit bias (generate/repetition.py), when the settings have any
    repetition: Repetition | None = None

    def __post_init__(self):
        self.stops = StopStrings(self.stops)


def shown_token(vocab: Vocab, token: int) -> str:
    """A token as text: its character, "<end>" for a document's end, and a byte model's
    byte that is no character alone as OpenAI writes such tokens ("bytes:\\xc3")."""
    if token == vocab.end_id:
        return "<end>"
    if vocab.mode == "byte" and vocab.code_points[token] >= 0x80:
        return f"bytes:\\x{vocab.code_points[token]:02x}"
    return vocab.decode([token])


def _each(fn, *states):
    """fn over a recurrent state's parts: an LSTM's (h, c), or a GRU's or RNN's h alone."""
    if isinstance(states[0], tuple):
        return tuple(fn(*parts) for parts in zip(*states, strict=True))
    return fn(*states)


class Full(Exception):
    """No room for another stream."""


class Engine:
    HANDS_PER_S = 2000  # pieces handed over per second, at most (about)
    # Prime characters read between two steps, over all arrivals: a long prime costs its
    # own stream the wait, not every other stream's steps (128 characters of the 2x256
    # LSTM take a few milliseconds on a CPU core).
    WARM_CHARS = 128

    # Rounds of the event loop between two steps. A request moves one hop per round
    # (bytes read, the app's middlewares, its body, the submit; a piece written), so
    # with a single round it took ~20 steps to be served its first character at 64
    # streams; an idle round costs microseconds (bench/RESULTS.md 8c).
    NETWORK_ROUNDS = 4

    # /health calls an engine with streams in flight but no step for this long stalled
    STALLED_S = 30.0

    def __init__(
        self,
        net: CharRNN,
        vocab: Vocab,
        max_streams: int,
        interval: float = 0.02,
        say: Callable[[str], None] = lambda line: None,
    ):
        self.net = net.eval()
        self.vocab = vocab
        self.device = next(net.parameters()).device
        self.max_streams = max_streams
        self.interval = interval  # seconds between a stream's pieces (0: every character)
        self.arrivals: deque[Stream] = deque()  # submitted, their primes being read
        self.streams: list[Stream] = []  # generating: one row each
        self.state = None
        self.last: torch.Tensor | None = None
        self.served = 0
        self.chars = 0
        self._next_net: CharRNN | None = None
        self._drain_at: float | None = None  # monotonic time to end every stream
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self.say = say  # one line for each failed step
        self.failed_steps = 0
        self.last_turn = time.monotonic()  # when the loop last went round

    # -- from the request side (all on the event loop) -----------------------------------
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="charlstm-engine")

    def submit(self, stream: Stream) -> None:
        if self.active >= self.max_streams or self._drain_at is not None:
            raise Full
        self.arrivals.append(stream)
        self._wake.set()

    @property
    def active(self) -> int:
        """Streams taken in: waiting or generating. A stream that has finished is not
        one, though its row leaves the batch only at the next turn: its client may ask
        again at once (equal requests finish together), and must find room."""
        live = sum(1 for s in self.streams if s.sampler is not None and not s.cancelled)
        return len(self.arrivals) + live

    def swap(self, net: CharRNN) -> None:
        """New weights of the same shape, taken between two steps (--watch; any thread)."""
        self._next_net = net.eval()

    def drain(self, seconds: float) -> None:
        """Shutting down: take no new stream; those in flight may finish for `seconds`,
        then each ends where it is, its text so far sent and finish_reason "abort"."""
        if self._drain_at is None:
            self._drain_at = time.monotonic() + seconds
            if self._wake is not None:
                self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    # -- the engine's task ---------------------------------------------------------------
    @property
    def health(self) -> str | None:
        """None when well; else why not: the task has ended, or it has streams and has
        not gone round for STALLED_S."""
        if self._task is not None and self._task.done():
            return "the engine has stopped"
        if self.active and time.monotonic() - self.last_turn > self.STALLED_S:
            return f"the engine has not stepped for {self.STALLED_S:.0f} s"
        return None

    async def _run(self) -> None:
        with torch.no_grad(), one_char_steps(self.device):
            while True:
                if not self.arrivals and not self.streams:
                    self._wake.clear()
                    await self._wake.wait()
                self.last_turn = time.monotonic()
                try:
                    self._turn()
                except Exception as err:  # one step's failure never stops the others' work
                    self._fail_in_flight(err)
                for _ in range(self.NETWORK_ROUNDS):  # the network's turn
                    await asyncio.sleep(0)

    def _turn(self) -> None:
        if self._next_net is not None:  # the state rows carry on under it
            self.net, self._next_net = self._next_net, None
        self._admit()
        if self._drain_at is not None and time.monotonic() >= self._drain_at:
            self._end_all("abort")
        self._drop_finished()
        if self.streams:
            self._step()

    def _fail_in_flight(self, err: Exception) -> None:
        """End every stream of the failed turn (the batch and the prime being read) with
        finish_reason "error", say so in one line, and start the batch afresh."""
        failed = [*self.streams, *list(self.arrivals)[:1]]
        if self.arrivals:
            self.arrivals.popleft()
        why = f"{type(err).__name__}: {err}"
        for stream in failed:
            if stream.finish_reason is None:
                stream.finish_reason, stream.sampler = "error", None
                stream.events.put_nowait((stream.index, Done("error", stream.produced, why)))
        self.served += len(failed)
        self.streams, self.state, self.last = [], None, None
        self.failed_steps += 1
        ids = ", ".join(dict.fromkeys(s.request or "?" for s in failed))
        self.say(f"a step failed ({why}); ended the requests {ids}; the engine goes on")

    def _admit(self) -> None:
        """Read arrivals' primes, WARM_CHARS at a time (short ones together, a long one on
        its own, a piece per turn), and join those whose prime is read to the batch."""
        budget = self.WARM_CHARS - self._warm_together()
        while self.arrivals and budget > 0:
            stream = self.arrivals[0]
            if stream.cancelled:
                self.arrivals.popleft()
                self.served += 1
                continue
            prime = stream.context[:-1]  # the last id is the first step's input
            if stream.warmed < len(prime):
                take = prime[stream.warmed : stream.warmed + budget]
                ids = torch.tensor([take], device=self.device)
                _, stream.warm_state = self.net(ids, stream.warm_state)
                stream.warmed += len(take)
                budget -= len(take)
            if stream.warmed < len(prime):
                continue
            self.arrivals.popleft()
            stream.sampler = Sampler(stream.settings)
            prime_ids = self.vocab.encode(stream.settings.prime, stream.settings.unknown).tolist()
            if stream.constraint is not None:
                stream.matched = stream.constraint.start(prime_ids, 1)
            stream.repetition = repetition_for(stream.settings, prime_ids, 1)
            stream.decoder = self.vocab.stream_decoder()
            state = stream.warm_state
            if state is None:  # no prime before the first step's input
                state = self.net.init_state(1, self.device)
            stream.warm_state = None
            last = torch.tensor([stream.context[-1:]], device=self.device)
            self._join(state, last)
            self.streams.append(stream)

    def _warm_together(self) -> int:
        """The primes of the arrivals at the head, of one length and within WARM_CHARS
        together, read as rows of one forward (requests that finish together come back
        together); each keeps its row of the state. Returns the characters read."""
        group: list[Stream] = []
        for stream in self.arrivals:
            length = len(stream.context) - 1
            if stream.cancelled or stream.warmed or length == 0:
                break
            if group and length != len(group[0].context) - 1:
                break
            if (len(group) + 1) * length > self.WARM_CHARS:
                break
            group.append(stream)
        if len(group) < 2:
            return 0
        ids = torch.tensor([s.context[:-1] for s in group], device=self.device)
        _, state = self.net(ids, None)
        for row, stream in enumerate(group):
            stream.warm_state = _each(lambda part, row=row: part[:, row : row + 1], state)
            stream.warmed = ids.shape[1]
        return ids.numel()

    def _end_all(self, reason: str) -> None:
        while self.arrivals:  # their primes not read yet: nothing made
            stream = self.arrivals.popleft()
            self.served += 1
            stream.events.put_nowait((stream.index, Done(reason, 0)))
        for stream in self.streams:
            if stream.cancelled or stream.sampler is None:
                continue
            self._release_text(stream, len(stream.pending))
            self._finish(stream, reason)
            self._hand_over(stream, time.monotonic(), 0.0)

    def _join(self, state, last: torch.Tensor) -> None:
        if self.last is None:
            self.state, self.last = state, last
            return
        self.state = _each(lambda a, b: torch.cat([a, b], dim=1), self.state, state)
        self.last = torch.cat([self.last, last], dim=0)

    def _drop_finished(self) -> None:
        keep = [i for i, s in enumerate(self.streams) if not (s.cancelled or s.sampler is None)]
        if len(keep) == len(self.streams):
            return
        self.served += len(self.streams) - len(keep)
        self.streams = [self.streams[i] for i in keep]
        if not keep:
            self.state, self.last = None, None
            return
        rows = torch.tensor(keep, device=self.device)
        self.state = _each(lambda part: part.index_select(1, rows), self.state)
        self.last = self.last.index_select(0, rows)

    def _step(self) -> None:
        logits, self.state = self.net(self.last, self.state)  # (rows, 1, vocab)
        # the model's own log-probabilities, before any mask, when a stream wants them
        wanted = any(s.log_probs for s in self.streams)
        own = F.log_softmax(logits[:, -1].double(), dim=-1) if wanted else None
        self._penalise(logits)
        matched = self._constrain(logits)
        chosen = draw_rows(logits, [s.sampler for s in self.streams])  # (rows, 1)
        if own is None:
            picked = [None] * len(self.streams)
        else:
            picked = own.gather(1, chosen).squeeze(1).tolist()  # waits for the device
        top = max(s.top for s in self.streams)
        if top:  # alternatives only when a stream asked for them: they cost a read
            values, ids = own.topk(min(top, own.shape[1]), dim=-1)
            alternatives = [
                [(shown_token(self.vocab, i), v) for i, v in zip(row_ids, row_values, strict=True)]
                for row_ids, row_values in zip(ids.tolist(), values.tolist(), strict=True)
            ]  # fmt: skip
            rows = zip(self.streams, picked, alternatives, strict=True)
            picked = [(lp, dict(alt[: s.top])) if s.top else lp for s, lp, alt in rows]
        self.last = chosen
        now = time.monotonic()
        # the event loop's work stays bounded however many streams there are: past
        # HANDS_PER_S * interval streams, each stream's pieces come further apart
        # (unless every character was asked for)
        interval = self.interval and max(self.interval, len(self.streams) / self.HANDS_PER_S)
        rows = zip(self.streams, chosen[:, 0].tolist(), picked, strict=True)
        for row, (stream, token, lp) in enumerate(rows):
            if stream.cancelled:
                continue
            if row in matched:  # a whole match that cannot go on: it ends here
                self._release_text(stream, len(stream.pending))
                self._finish(stream, "stop")
            else:
                self._advance(stream, token, lp)
            self._hand_over(stream, now, interval)

    def _penalise(self, logits: torch.Tensor) -> None:
        """Each penalised row's logits adjusted in place (generate/repetition.py)."""
        for row, stream in enumerate(self.streams):
            if stream.repetition is not None and not stream.cancelled:
                logits[row, 0] = stream.repetition.adjust(logits[row, 0][None])[0]

    def _constrain(self, logits: torch.Tensor) -> set[int]:
        """Mask each constrained row's logits in place (the others draw as they would);
        the rows that cannot go on are whole matches, which end at this step."""
        matched = set()
        for row, stream in enumerate(self.streams):
            if stream.constraint is None or stream.cancelled:
                continue
            allowed = stream.constraint.allowed(stream.matched, stream.produced)
            if not bool(allowed.any()):  # waits for the device
                matched.add(row)
            else:
                logits[row, 0].masked_fill_(~allowed[0], float("-inf"))
        return matched

    @staticmethod
    def _hand_over(stream: Stream, now: float, interval: float) -> None:
        """The stream's text made since its last piece, once the interval has passed or
        the stream has ended; then its end."""
        ended = stream.sampler is None
        if stream.ready and (ended or now >= stream.hand_at):
            if stream.top:
                lps, tops = zip(*stream.ready_lp, strict=True)
                piece = Piece("".join(stream.ready), list(lps), list(tops))
            else:
                piece = Piece("".join(stream.ready), stream.ready_lp)
            stream.events.put_nowait((stream.index, piece))
            stream.ready, stream.ready_lp = [], []
            stream.hand_at = now + interval
        if ended:
            stream.events.put_nowait((stream.index, Done(stream.finish_reason, stream.produced)))

    def _advance(self, stream: Stream, token: int, log_prob) -> None:
        if stream.repetition is not None:
            stream.repetition.add([token])
        if stream.constraint is not None:
            chosen = torch.tensor([token], device=self.device)
            stream.matched = stream.constraint.advance(stream.matched, chosen)
        end = self.vocab.end_id
        if end is not None and token == end:
            self._finish(stream, "stop")
            return
        stream.produced += 1
        self.chars += 1
        piece = stream.decoder.feed(token)  # bytes: whole characters at a time
        if not stream.stops:
            if piece:
                stream.ready.append(piece)
                if stream.log_probs:
                    stream.ready_lp += [log_prob] * len(piece)
        else:
            self._hold_for_stops(stream, piece, log_prob)
            if stream.sampler is None:
                return
        if stream.produced >= stream.settings.length:
            self._release_text(stream, len(stream.pending))
            self._finish(stream, "length")

    def _hold_for_stops(self, stream: Stream, piece: str, log_prob) -> None:
        """Text that may begin a stop string waits until it cannot; a stop string found
        ends the stream before it (generate/stops.py)."""
        stream.pending += piece
        if stream.log_probs:
            stream.pending_lp += [log_prob] * len(piece)
        final, hit = stream.stops.release(stream.pending)
        self._release_text(stream, final)
        if hit:
            stream.pending, stream.pending_lp = "", []
            self._finish(stream, "stop")

    def _release_text(self, stream: Stream, upto: int) -> None:
        if upto <= 0:
            return
        stream.ready.append(stream.pending[:upto])
        stream.ready_lp += stream.pending_lp[:upto]
        stream.pending, stream.pending_lp = stream.pending[upto:], stream.pending_lp[upto:]

    def _finish(self, stream: Stream, reason: str) -> None:
        stream.finish_reason = reason
        stream.sampler = None  # dropped before the next step
