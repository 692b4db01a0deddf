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
from dataclasses import replace

import torch
import torch.nn.functional as F

from charlstm import interrupt
from charlstm.data.vocab import Vocab
from charlstm.generate.constraints import constraint_for
from charlstm.generate.context import prime_context, start_context
from charlstm.generate.documents import make_documents
from charlstm.generate.result import Generated
from charlstm.generate.sample import generate
from charlstm.model import CharRNN, State, evaluating
from charlstm.options import SampleSettings


def _select(state: State, rows: torch.Tensor) -> State:
    if isinstance(state, tuple):
        return tuple(s.index_select(1, rows) for s in state)
    return state.index_select(1, rows)


def _cut_at_stop(text: str, stop: str | None) -> tuple[str, bool]:
    if stop is None or stop not in text:
        return text, False
    return text[: text.index(stop)], True


@torch.no_grad()
def beam_search(model: CharRNN, vocab: Vocab, prime: str, settings: SampleSettings) -> Generated:
    """The likeliest continuation found by keeping the `settings.beam` likeliest
    prefixes at every character, up to `settings.length` characters or the stop string
    (compared by mean log-probability per character). Width 1 is greedy decoding. Beam
    search is not monotone in its width, so greedy's text is kept when it is likelier."""
    found = _beam(model, vocab, prime, settings, settings.beam)
    if settings.beam > 1:
        greedy = _beam(model, vocab, prime, settings, 1)
        if greedy.mean_log_prob > found.mean_log_prob:
            return greedy
    return found


def _beam(model: CharRNN, vocab: Vocab, prime: str, settings: SampleSettings, width: int):
    device = next(model.parameters()).device
    with evaluating(model):
        shown_prime, context = start_context(vocab, prime, settings)
        end = vocab.end_id
        state = None
        if len(context) > 1:
            _, state = model(torch.tensor([context[:-1]], device=device), state)
        last = torch.tensor([[context[-1]]], device=device)
        beams: list[list[int]] = [[]]
        scores = torch.zeros(1, dtype=torch.float64, device=device)
        finished: list[tuple[float, list[int], str]] = []  # log-prob, ids, text
        constraint = constraint_for(vocab, settings, device)
        if constraint is not None:
            states = constraint.start(vocab.encode(shown_prime).tolist(), 1)
        # a constrained document ends where it matches: its end may follow the last character
        steps = settings.length + (constraint is not None and end is not None)
        for step in range(steps):
            interrupt.check("searching")
            logits, state = model(last, state)
            logp = F.log_softmax(logits[:, -1].double(), dim=-1)  # (beams, vocab)
            if constraint is not None:
                allowed = constraint.allowed(states, step)
                open_ = allowed.any(dim=1).tolist()  # waits for the device
                for i in (i for i, o in enumerate(open_) if not o):  # whole matches, ended
                    finished.append((float(scores[i]), beams[i], vocab.decode(beams[i])))
                keep = torch.tensor([i for i, o in enumerate(open_) if o], device=device)
                if len(keep) == 0:
                    beams, scores = [], scores[:0]
                    break
                if len(keep) < len(beams):
                    beams = [beams[i] for i in keep.tolist()]
                    scores, logp, allowed = scores[keep], logp[keep], allowed[keep]
                    state, states = _select(state, keep), states[keep]
                logp = logp.masked_fill(~allowed, -math.inf)
            total = (scores[:, None] + logp).flatten()
            top = total.topk(min(width, total.numel()))
            found = torch.isfinite(top.values)  # a constraint may leave fewer than `width`
            top_values, top_indices = top.values[found], top.indices[found]
            # waits for the device: the chosen rows and characters come back
            rows, chars = (top_indices // logp.shape[1]).tolist(), (top_indices % logp.shape[1])
            beams = [beams[r] + [c] for r, c in zip(rows, chars.tolist(), strict=True)]
            scores = top_values
            state = _select(state, torch.tensor(rows, device=device))
            if constraint is not None:
                states = constraint.advance(states[torch.tensor(rows, device=device)], chars)
            last = chars[:, None]
            if settings.stop is not None or end is not None:
                keep = []
                for i, ids in enumerate(beams):
                    if end is not None:
                        text, stopped = vocab.decode(ids), ids[-1] == end
                    else:
                        text, stopped = _cut_at_stop(vocab.decode(ids), settings.stop)
                    if stopped:
                        finished.append((float(scores[i]), ids, text))
                    else:
                        keep.append(i)
                if not keep:  # every beam has stopped
                    beams, scores = [], scores[:0]
                    break
                if len(keep) < len(beams):
                    index = torch.tensor(keep, device=device)
                    beams = [beams[i] for i in keep]
                    scores, last = scores[index], last[index]
                    state = _select(state, index)
                    if constraint is not None:
                        states = states[index]
        ended = zip(scores.tolist(), beams, strict=True)
        finished += [(score, ids, vocab.decode(ids)) for score, ids in ended]
        # per prediction; a document's end is one of its predictions
        best = max(finished, key=lambda f: f[0] / max(len(f[1]), 1))
        log_prob, ids, text = best
        ended = end is not None and bool(ids) and ids[-1] == end
        return Generated(shown_prime + text, log_prob, len(ids) - ended, ended)


@torch.no_grad()
def continuation_log_probs(
    model: CharRNN, vocab: Vocab, prime: str, texts: list[str], unknown: str = "error"
) -> list[tuple[float, int]]:
    """(ln P(text | prime), ids scored) for each text, scored together as one padded
    batch."""
    device = next(model.parameters()).device
    _, context = prime_context(vocab, prime, unknown)
    rows = [vocab.encode(t, unknown="skip").tolist() for t in texts]
    width = max((len(r) for r in rows), default=0)
    if width == 0:
        return [(0.0, 0) for _ in texts]
    ids = torch.zeros(len(rows), len(context) + width, dtype=torch.long, device=device)
    ids[:, : len(context)] = torch.tensor(context, device=device)
    mask = torch.zeros(len(rows), width, dtype=torch.bool, device=device)
    for i, row in enumerate(rows):
        if row:
            ids[i, len(context) : len(context) + len(row)] = torch.tensor(row, device=device)
            mask[i, : len(row)] = True
    with evaluating(model):
        logits, _ = model(ids[:, :-1])
    logp = F.log_softmax(logits[:, len(context) - 1 :].double(), dim=-1)
    picked = logp.gather(-1, ids[:, len(context) :, None]).squeeze(-1)
    totals = (picked * mask).sum(dim=1).tolist()  # waits for the device
    return [(total, len(row)) for total, row in zip(totals, rows, strict=True)]


def best_of(model: CharRNN, vocab: Vocab, prime: str, settings: SampleSettings) -> Generated:
    """`settings.best_of` samples drawn together (with the settings' temperature, top-k,
    top-p and seed), and the likeliest of them by bits per character."""
    if vocab.documents:
        made = make_documents(model, vocab, settings, prime, count=settings.best_of)
        scored = made
        return min(scored, key=lambda s: s.bpc)
    draws = replace(settings, num_samples=settings.best_of, best_of=None)
    texts = generate(model, vocab, prime, draws)
    shown_prime, _ = prime_context(vocab, prime, settings.unknown)
    continuations = [t[len(shown_prime) :] for t in texts]
    scores = continuation_log_probs(model, vocab, prime, continuations, settings.unknown)
    scored = [Generated(t, lp, n) for t, (lp, n) in zip(texts, scores, strict=True)]
    return min(scored, key=lambda s: s.bpc)
