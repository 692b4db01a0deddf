"""Making more of something: whole new documents from a document model, as makemore
does, with the repeats and the copies of the training list told apart.

Every document starts where training started each one (the zero state, then the end
id of the document before, the label, the prime) and ends when the model draws the
end id, or at `length` characters. All documents of a round are drawn side by side as
one batch; each one's log-probability is the model's own (temperature 1) of its
characters and its end, so documents compare by bits per character whatever the
temperature they were drawn at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from charlstm import interrupt
from charlstm.data.vocab import Vocab
from charlstm.errors import CharlstmError
from charlstm.generate.constraints import constraint_for
from charlstm.generate.context import document_context, warm_state
from charlstm.generate.repetition import repetition_for
from charlstm.generate.result import Generated, Tally
from charlstm.generate.sample import Sampler, one_char_steps
from charlstm.model import CharRNN, evaluating
from charlstm.options import SampleSettings, derived_seed

# Steps drawn between checks whether every document has ended (each check waits for
# the device).
CHECK_EVERY = 16
# --unique / --novel give up after drawing this many times the documents asked for.
MAX_DRAWS_PER_DOCUMENT = 50
ROUND_MAX = 1024  # documents drawn side by side at most


@dataclass(frozen=True)
class Known:
    """The documents a model was trained on and those held out, for telling new ones."""

    train: frozenset[str]
    val: frozenset[str]

    def where(self, text: str) -> str:
        if text in self.train:
            return "train"
        return "val" if text in self.val else "new"


@torch.no_grad()
def make_documents(
    model: CharRNN,
    vocab: Vocab,
    settings: SampleSettings,
    prime: str = "",
    count: int | None = None,
) -> list[Generated]:
    """`count` documents (default settings.documents or num_samples), drawn as one batch,
    each beginning with the prime."""
    count = count or settings.documents or settings.num_samples
    device = next(model.parameters()).device
    with evaluating(model):
        shown_prime, context = document_context(vocab, prime, settings)
        sampler = Sampler(settings)
        state = warm_state(model, context, count)
        last = torch.full((count, 1), context[-1], dtype=torch.long, device=device)
        ended = torch.zeros(count, dtype=torch.bool, device=device)
        constraint = constraint_for(vocab, settings, device)
        if constraint is not None:
            states = constraint.start(vocab.encode(shown_prime).tolist(), count)
        repetition = repetition_for(settings, vocab.encode(shown_prime).tolist(), count)
        drawn, log_probs = [], []
        for step in range(settings.length + 1):  # the end may follow the last character
            interrupt.check("sampling")
            with one_char_steps(device):
                logits, state = model(last, state)
            logits = logits[:, -1]
            drawn_from = logits if repetition is None else repetition.adjust(logits)
            if constraint is None:
                choice = sampler(drawn_from)
            else:  # the end is allowed where the text is a whole match
                choice = sampler(drawn_from, constraint.allowed(states, step))
                states = constraint.advance(states, choice)
            if repetition is not None:
                repetition.add(choice.tolist())  # waits for the device
            own = F.log_softmax(logits.double(), dim=-1)
            picked = own.gather(1, choice[:, None]).squeeze(1)
            log_probs.append(torch.where(ended, torch.zeros_like(picked), picked))
            drawn.append(choice)
            ended = ended | (choice == vocab.end_id)
            last = choice[:, None]
            if step % CHECK_EVERY == CHECK_EVERY - 1 and bool(ended.all()):  # waits
                break
        return _finish(vocab, settings, shown_prime, drawn, log_probs)


def _finish(vocab, settings, shown_prime, drawn, log_probs) -> list[Generated]:
    ids = torch.stack(drawn, dim=1).tolist()  # waits for the device
    lps = torch.stack(log_probs, dim=1).tolist()
    made = []
    for row, row_lp in zip(ids, lps, strict=True):
        # drawn: up to length characters, then one more draw that may be the end
        ended = vocab.end_id in row
        n = row.index(vocab.end_id) if ended else min(len(row), settings.length)
        text = vocab.decode(row[:n])
        chars = n
        log_prob = sum(row_lp[: n + ended])
        made.append(Generated(shown_prime + text, log_prob, chars, ended, settings.label))
    return made


def sample_documents(
    model: CharRNN,
    vocab: Vocab,
    settings: SampleSettings,
    prime: str = "",
    known: Known | None = None,
) -> tuple[list[Generated], Tally]:
    """settings.documents documents, in the order drawn: with `unique` no text twice,
    with `novel` none of the training split's (which `known` must then hold). Drawn
    in rounds (the seed moves on by one each round) until there are enough, or
    MAX_DRAWS_PER_DOCUMENT times as many have been drawn (then fewer come back)."""
    wanted = settings.documents or 1
    if settings.novel and known is None:
        raise CharlstmError("--novel needs the training corpus, to tell which are new")
    tally, kept, seen = Tally(told=known is not None), [], set()
    round_ = 0
    while len(kept) < wanted and tally.drawn < wanted * MAX_DRAWS_PER_DOCUMENT:
        need = wanted - len(kept)
        size = need if not (settings.unique or settings.novel) else min(ROUND_MAX, 2 * need + 8)
        seed = derived_seed(settings.seed, round_)
        batch = make_documents(model, vocab, replace(settings, seed=seed), prime, size)
        round_ += 1
        for made in batch:
            tally.drawn += 1
            text = made.text
            repeat = text in seen
            if repeat:
                tally.repeats += 1
            else:
                seen.add(text)
                if known is not None:
                    tally.places[known.where(text)] += 1
            if len(kept) >= wanted:
                continue
            if (settings.unique and repeat) or (settings.novel and known.where(text) == "train"):
                continue
            kept.append(made)
    return kept, tally


def known_documents(texts_train: Iterable[str], texts_val: Iterable[str]) -> Known:
    return Known(frozenset(texts_train), frozenset(texts_val))
