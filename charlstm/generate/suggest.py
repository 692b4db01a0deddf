"""What could come next: the likeliest next characters and the likeliest next words,
each with the model's own probability (temperature 1), as char-rnn users have long
asked ("a: 0.5, b: 0.4, ...") and word-suggesting editors show.

A word is a run of word characters (letters, digits and the underscore; in a byte
model, any byte past ASCII too). The next word is what follows the prime: spaces first
when the prime does not end inside a word, then word characters, ended by the first
character that is neither; that character is not part of the word, and the word's
probability sums over every character that could end it. A document model's next
"words" are whole completions of the document, ended by its end.

The N likeliest are found exactly by a best-first search over prefixes: a prefix's
probability bounds that of every word extending it, so once N words are at least as
likely as the likeliest prefix not yet read, no other word can be likelier. The search
reads at most `max_chars` characters past the prime and makes at most `max_steps` model
steps (then it returns the best found).
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from charlstm import interrupt
from charlstm.data.vocab import Vocab
from charlstm.generate.context import start_context, warm_state
from charlstm.model import CharRNN, State, evaluating
from charlstm.options import SampleSettings

MAX_WORD_CHARS = 24  # characters a next word may have (a document's completion: 200)
MAX_DOCUMENT_CHARS = 200
MAX_STEPS = 4000  # model steps one search may make


@dataclass(frozen=True)
class Suggestion:
    text: str  # what would come next ("" with `ends`: the document's end)
    prob: float  # the model's probability of it, given the prime
    ends: bool = False  # a document model's end (next_chars), or a completion ending it

    def to_dict(self) -> dict:
        return {"text": self.text, "prob": self.prob, "log_prob": math.log(self.prob),
                "ends": self.ends}  # fmt: skip


def _step(net: CharRNN, ids: list[int], state: State | None) -> tuple[torch.Tensor, State]:
    """Log-probabilities (vocab,) after reading `ids` from `state`, and the new state."""
    device = next(net.parameters()).device
    logits, state = net(torch.tensor([ids], device=device), state)
    return F.log_softmax(logits[0, -1].double(), dim=-1), state


@torch.no_grad()
def next_chars(net: CharRNN, vocab: Vocab, settings: SampleSettings, n: int) -> list[Suggestion]:
    """The n likeliest next characters after settings.prime (read as sampling reads it),
    most likely first."""
    _, context = start_context(vocab, settings.prime, settings)
    with evaluating(net):
        warm = warm_state(net, context, 1)
        if vocab.mode == "byte":
            return _next_byte_chars(net, vocab, context, warm, n)
        log_probs, _ = _step(net, context[-1:], warm)
    top = log_probs.topk(min(n, log_probs.numel()))
    return [_suggestion(vocab, [i], lp) for lp, i in zip(*(t.tolist() for t in top), strict=True)]


def _best_first(net: CharRNN, start: tuple, found: dict, n: int, max_steps: int = MAX_STEPS):
    """The search both suggestions make: prefixes popped likeliest first, from `start`
    (what the caller keeps beside a prefix, the state, the ids to read), each yielded as
    (prefix, kept, state after it, P(prefix, then each id), push) for the caller to
    record what it found and push(p, prefix, kept, state, id) what may grow; it ends
    once the n best found are at least as likely as any prefix left (a prefix's
    probability bounds every extension's), or after max_steps model steps."""
    order = itertools.count()  # ties popped in the order pushed
    heap = [(0.0, next(order), (), *start)]

    def push(p: float, prefix: tuple, kept, state: State, i: int) -> None:
        heapq.heappush(heap, (-math.log(max(p, 1e-300)), next(order), prefix, kept, state, (i,)))

    steps = 0
    while heap and steps < max_steps:
        neg, _, prefix, kept, state, read = heapq.heappop(heap)
        if len(found) >= n and sorted(found.values())[-n] >= math.exp(-neg):
            break  # nothing left can beat the n found
        interrupt.check("suggesting")
        log_probs, state = _step(net, list(read), state)
        steps += 1
        yield prefix, kept, state, torch.exp(log_probs - neg).tolist(), push


def _utf8_length(lead: int) -> int:
    """Bytes in the UTF-8 sequence this byte begins (0: it begins none)."""
    for length, (low, high) in enumerate(((0x00, 0x7F), (0xC2, 0xDF), (0xE0, 0xEF),
                                          (0xF0, 0xF4)), start=1):  # fmt: skip
        if low <= lead <= high:
            return length
    return 0


def _next_byte_chars(net, vocab: Vocab, context: list[int], warm, n: int) -> list[Suggestion]:
    """A byte model's n likeliest next characters, whole: the probability of each UTF-8
    sequence (a lead byte, then its continuation bytes), found best first as next_words
    finds words; sequences that decode to no character are no suggestion."""
    found: dict[tuple[int, ...], float] = {}
    for prefix, _, state, prob, push in _best_first(net, (None, warm, context[-1:]), found, n):
        for i, p in enumerate(prob):
            ids = (*prefix, i)
            if i in vocab.special_ids:
                if not prefix:  # a document's end, as next_chars gives it
                    found[ids] = p
                continue
            symbols = bytes(vocab.code_points[j] for j in ids)
            wanted = _utf8_length(symbols[0])
            if wanted == 0 or (len(ids) > 1 and not 0x80 <= symbols[-1] <= 0xBF):
                continue  # no character begins or goes on this way
            if len(ids) < wanted:
                push(p, ids, None, state, i)
            elif _decodes(symbols):
                found[ids] = p
    best = sorted(found.items(), key=lambda kv: -kv[1])[:n]
    return [_suggestion(vocab, list(ids), math.log(p)) for ids, p in best]


def _decodes(symbols: bytes) -> bool:
    try:
        symbols.decode("utf-8")
        return True
    except UnicodeDecodeError:  # an overlong form, a surrogate, past U+10FFFF
        return False


def _suggestion(vocab: Vocab, ids: list[int], log_prob: float) -> Suggestion:
    ends = bool(ids) and ids[-1] == vocab.end_id
    return Suggestion(vocab.decode(ids[:-1] if ends else ids), math.exp(log_prob), ends)


def _whole(vocab: Vocab, ids: tuple[int, ...]) -> bool:
    """A byte model's word that ends on a character's last byte."""
    return _decodes(bytes(vocab.code_points[i] for i in ids))


def _word_kinds(vocab: Vocab) -> tuple[set[int], set[int]]:
    """The ids of word characters and of spaces (the rest end a word)."""
    word, space = set(), set()
    for i, symbol in enumerate(vocab.code_points):
        if i in vocab.special_ids:
            continue
        if vocab.mode == "byte":
            char, beyond = chr(symbol), symbol >= 0x80
        else:
            char, beyond = chr(symbol), False
        if beyond or char.isalnum() or char == "_":
            word.add(i)
        elif char in " \t":
            space.add(i)
    return word, space


@torch.no_grad()
def next_words(
    net: CharRNN,
    vocab: Vocab,
    settings: SampleSettings,
    n: int,
    max_chars: int | None = None,
    max_steps: int = MAX_STEPS,
) -> list[Suggestion]:
    """The n likeliest next words after settings.prime (see the module's docstring),
    most likely first; for a document model, the n likeliest completions."""
    shown, context = start_context(vocab, settings.prime, settings)
    documents = vocab.documents
    max_chars = max_chars or (MAX_DOCUMENT_CHARS if documents else MAX_WORD_CHARS)
    word, space = _word_kinds(vocab)
    inside = not documents and bool(shown) and (shown[-1].isalnum() or shown[-1] == "_")
    found: dict[tuple[int, ...], float] = {}  # word ids -> probability
    with evaluating(net):
        warm = warm_state(net, context, 1)
        for prefix, in_word, state, prob, push in _best_first(
            net, (inside, warm, context[-1:]), found, n, max_steps
        ):
            floor = sorted(found.values())[-n] if len(found) >= n else 0.0
            for i, p in enumerate(prob):
                if documents:
                    if i == vocab.end_id:
                        found[prefix] = found.get(prefix, 0.0) + p
                        continue
                    grows = i not in vocab.special_ids
                elif i in word:
                    grows = True
                elif i in space and not in_word:
                    grows = True
                else:  # the word ends here, if there is one (a byte model's: whole)
                    if in_word and prefix and (vocab.mode != "byte" or _whole(vocab, prefix)):
                        found[prefix] = found.get(prefix, 0.0) + p
                    continue
                if grows and len(prefix) < max_chars and p > floor:
                    push(p, (*prefix, i), in_word or i in word, state, i)
    best = sorted(found.items(), key=lambda kv: -kv[1])[:n]
    end = () if not documents else (vocab.end_id,)
    return [_suggestion(vocab, [*ids, *end], math.log(p)) for ids, p in best]
