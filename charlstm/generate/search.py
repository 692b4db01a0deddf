"""Search over samples: beam search over characters, and the best of N draws.

Both judge text by the model's own probabilities (temperature 1): the log-probability
of the generated characters given the prime, and, to compare texts of different
lengths (a stop string ends some early), the mean per character, i.e. bits per
character. char-rnn and torch-rnn users have long asked for both (char-rnn #138,
torch-rnn #113): a sample drawn at temperature T is one guess; these look for likelier
text. A document model searches for a whole document: from the document start, ending
at the end id (its probability counted too), or at `length` characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from charlstm import interrupt
from charlstm.data.vocab import Vocab
from charlstm.generate.constraints import constraint_for
from charlstm.generate.context import prime_context, start_context, warm_state
from charlstm.generate.repetition import Repetition, repetition_for
from charlstm.generate.result import Generated, likeliest
from charlstm.generate.sample import draw_texts
from charlstm.generate.stops import StopStrings
from charlstm.model import CharRNN, State, evaluating
from charlstm.options import SampleSettings


def _select(state: State, rows: torch.Tensor) -> State:
    if isinstance(state, tuple):
        return tuple(s.index_select(1, rows) for s in state)
    return state.index_select(1, rows)


# The likeliest text of a character model is a loop: a banner of '#', a run of spaces, a
# line written again and again. A beam of 2 or more keeps no 16-character string twice
# unless told otherwise (as summarisation models ship no_repeat_ngram_size in their
# generation defaults). 16 lets indentation and short repeats through; on `make demo`'s
# model it took the beam samples more than two thirds whitespace from 60% to 0% (ten
# primes, bench/whitespace.py), 8 and 12 cut indentation.
BEAM_NO_REPEAT_NGRAM = 16


@torch.no_grad()
def beam_search(model: CharRNN, vocab: Vocab, prime: str, settings: SampleSettings) -> Generated:
    """The likeliest continuation found by keeping the `settings.beam` likeliest
    prefixes at every character, up to `settings.length` characters or the stop string
    (compared by mean log-probability per character), with no n-gram twice (see
    BEAM_NO_REPEAT_NGRAM). Width 1 is greedy decoding. Beam search is not monotone in
    its width, so greedy's text (under the same rules) is kept when it is likelier."""
    if settings.beam > 1 and settings.no_repeat_ngram is None:
        settings = replace(settings, no_repeat_ngram=BEAM_NO_REPEAT_NGRAM)
    found = _beam(model, vocab, prime, settings, settings.beam)
    if settings.beam > 1:
        greedy = _beam(model, vocab, prime, settings, 1)
        if greedy.mean_log_prob > found.mean_log_prob:
            return greedy
    return found


@dataclass
class _Beams:
    """The live beams, row by row: their ids, what ranks them (the model's
    log-probability, or with a repetition rule the log-probability it draws by), the
    model's own log-probability, and each row's recurrent state, last id, constraint
    state and repetition record."""

    ids: list[list[int]]
    rank: torch.Tensor
    own: torch.Tensor
    state: State
    last: torch.Tensor
    states: torch.Tensor | None
    repetition: Repetition | None

    def keep(self, rows: list[int]) -> None:
        """These rows, in this order (a row may come twice)."""
        index = torch.tensor(rows, dtype=torch.long, device=self.rank.device)
        self.ids = [list(self.ids[r]) for r in rows]
        self.rank, self.own, self.last = self.rank[index], self.own[index], self.last[index]
        self.state = _select(self.state, index)
        if self.states is not None:
            self.states = self.states[index]
        if self.repetition is not None:
            self.repetition.select(rows)

    def entry(self, i: int, vocab: Vocab) -> tuple[float, float, list[int], str]:
        return float(self.rank[i]), float(self.own[i]), self.ids[i], vocab.decode(self.ids[i])


Finished = list[tuple[float, float, list[int], str]]  # rank, log-prob, ids, text


def _beam(model: CharRNN, vocab: Vocab, prime: str, settings: SampleSettings, width: int):
    device = next(model.parameters()).device
    with evaluating(model):
        shown_prime, context = start_context(vocab, prime, settings)
        end = vocab.end_id
        # a document ends at its end id; a stop string ends plain text
        stops = StopStrings(settings.stop if end is None else None)
        prime_ids = vocab.encode(shown_prime).tolist()
        constraint = constraint_for(vocab, settings, device)
        zero = torch.zeros(1, dtype=torch.float64, device=device)
        first = torch.tensor([[context[-1]]], device=device)
        beams = _Beams([[]], zero, zero.clone(), warm_state(model, context, 1), first,
                       constraint.start(prime_ids, 1) if constraint is not None else None,
                       repetition_for(settings, prime_ids, 1))  # fmt: skip
        finished: Finished = []
        # a constrained document ends where it matches: its end may follow the last character
        for step in range(settings.length + (constraint is not None and end is not None)):
            interrupt.check("searching")
            logits, beams.state = model(beams.last, beams.state)
            own = F.log_softmax(logits[:, -1].double(), dim=-1)  # (beams, vocab)
            rank = own
            if beams.repetition is not None:
                rank = F.log_softmax(beams.repetition.adjust(logits[:, -1]).double(), dim=-1)
            if constraint is not None:
                allowed = constraint.allowed(beams.states, step)
                kept = _constrain(beams, allowed, own, rank, vocab, finished)
                if kept is None:
                    break
                own, rank = kept
            _extend(beams, own, rank, width, constraint)
            if (stops or end is not None) and not _retire_ended(beams, vocab, stops, finished):
                break  # every beam has ended
        finished += [beams.entry(i, vocab) for i in range(len(beams.ids))]
        # per prediction; a document's end is one of its predictions
        _, log_prob, ids, text = max(finished, key=lambda f: f[0] / max(len(f[2]), 1))
        ended = end is not None and bool(ids) and ids[-1] == end
        return Generated(shown_prime + text, log_prob, len(ids) - ended, ended)


def _constrain(beams: _Beams, allowed: torch.Tensor, own, rank, vocab: Vocab, finished: Finished):
    """Apply a constraint's allowed characters: rows with none left are whole matches,
    moved to `finished`; the rest rank only what the constraint allows. (own, rank) of
    the rows that go on, or None when none do."""
    open_ = allowed.any(dim=1).tolist()  # waits for the device
    finished += [beams.entry(i, vocab) for i, o in enumerate(open_) if not o]
    rows = [i for i, o in enumerate(open_) if o]
    if len(rows) < len(open_):
        beams.keep(rows)
        own, rank, allowed = own[rows], rank[rows], allowed[rows]
    if not rows:
        return None
    rank = rank.masked_fill(~allowed, -math.inf)
    if beams.repetition is not None:  # a rule against loops steps aside where it left nothing
        stuck = ~torch.isfinite(rank).any(dim=1, keepdim=True)
        rank = torch.where(stuck, own.masked_fill(~allowed, -math.inf), rank)
    return own, rank


def _extend(beams: _Beams, own: torch.Tensor, rank: torch.Tensor, width: int, constraint) -> None:
    """Keep the `width` likeliest one-character extensions of the beams."""
    total = (beams.rank[:, None] + rank).flatten()
    top = total.topk(min(width, total.numel()))
    found = torch.isfinite(top.values)  # a constraint may leave fewer than `width`
    values, indices = top.values[found], top.indices[found]
    # waits for the device: the chosen rows and characters come back
    rows, chars = (indices // own.shape[1]).tolist(), indices % own.shape[1]
    own_next = beams.own[rows] + own[rows, chars]
    beams.keep(rows)
    beams.ids = [ids + [c] for ids, c in zip(beams.ids, chars.tolist(), strict=True)]
    beams.rank, beams.own, beams.last = values, own_next, chars[:, None]
    if constraint is not None:
        beams.states = constraint.advance(beams.states, chars)
    if beams.repetition is not None:
        beams.repetition.add(chars.tolist())


def _retire_ended(beams: _Beams, vocab: Vocab, stops: StopStrings, finished: Finished) -> bool:
    """Move the beams that ended this step (at the end id, or where a stop string
    appeared, decoding only the ids that can show one) to `finished`; whether any go on."""
    going = []
    for i, ids in enumerate(beams.ids):
        if vocab.end_id is not None and ids[-1] == vocab.end_id:
            finished.append(beams.entry(i, vocab))
        elif stops and stops.ended(vocab, ids):
            rank, own, ids, text = beams.entry(i, vocab)
            finished.append((rank, own, ids, stops.cut(text)[0]))
        else:
            going.append(i)
    if len(going) < len(beams.ids):
        beams.keep(going)
    return bool(going)


@torch.no_grad()
def continuation_log_probs(
    model: CharRNN, vocab: Vocab, prime: str, texts: list[str], unknown: str = "error"
) -> list[tuple[float, int]]:
    """(ln P(text | prime), ids scored) for each text, scored together as one padded
    batch from the state the prime leaves (read in windows: a long prime costs its
    state, not its activations)."""
    device = next(model.parameters()).device
    _, context = prime_context(vocab, prime, unknown)
    rows = [vocab.encode(t, unknown="skip").tolist() for t in texts]
    width = max((len(r) for r in rows), default=0)
    if width == 0:
        return [(0.0, 0) for _ in texts]
    ids = torch.full((len(rows), 1 + width), context[-1], dtype=torch.long, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        if row:
            ids[i, 1 : 1 + len(row)] = torch.tensor(row, device=device)
            mask[i, : len(row)] = True
    with evaluating(model):
        logits, _ = model(ids[:, :-1], warm_state(model, context, len(rows)))
    logp = F.log_softmax(logits.double(), dim=-1)
    picked = logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
    totals = (picked * mask).sum(dim=1).tolist()  # waits for the device
    return [(total, len(row)) for total, row in zip(totals, rows, strict=True)]


def best_of(model: CharRNN, vocab: Vocab, prime: str, settings: SampleSettings) -> Generated:
    """Of a text model: `settings.best_of` samples drawn together (with the settings'
    temperature, top-k, top-p and seed), and the likeliest of them by bits per character
    (a document model's best-of is generate/run.py's)."""
    draws = replace(settings, num_samples=settings.best_of, best_of=None)
    texts = draw_texts(model, vocab, prime, draws)
    shown_prime, _ = prime_context(vocab, prime, settings.unknown)
    continuations = [t[len(shown_prime) :] for t in texts]
    scores = continuation_log_probs(model, vocab, prime, continuations, settings.unknown)
    scored = [Generated(t, lp, n) for t, (lp, n) in zip(texts, scores, strict=True)]
    return likeliest(scored)
