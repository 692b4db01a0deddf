"""A baseline to beat: a character n-gram model with interpolated Kneser-Ney smoothing,
and where the network's errors differ from it (Karpathy, Johnson and Fei-Fei 2015 set
their LSTM beside an n-gram model the same way).

Interpolated Kneser-Ney (Chen and Goodman 1998), with one absolute discount per order
from the count of counts, D = n1 / (n1 + 2 n2):

    P_k(w | h) = max(a_k(hw) - D_k, 0) / A_k(h) + D_k B_k(h) / A_k(h) P_{k-1}(w | h')

where a_N are the raw counts of the highest order, a_k (k < N) continuation counts (how
many distinct characters precede hw), A_k(h) their sum over w, B_k(h) how many w have
one, h' the context without its first character, and P_0 uniform over the vocabulary; a
context never seen leaves the lower order's probability as it is. Every P_k sums to 1
over the vocabulary (a test holds it to that).

Counts are kept compactly: each k-gram is one int64 (its ids as digits in base V), the
distinct ones sorted with their counts (numpy's unique), looked up by binary search: a
corpus of n characters costs about 16 n bytes per order while counting and 12 bytes per
distinct k-gram after. Training reads at most `max_chars` characters of the training
split (the first ones), which bounds both.

NLTK's KneserNeyInterpolated was the maintained library to prefer; it is pure Python
(tens of microseconds per character and order, minutes for a 1 MB validation split) and
gives a character unseen in training probability 0 (an infinite loss). KenLM needs a C++
build and its own binaries. numpy's sort and search do the job in seconds.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from charlstm.errors import CharlstmError

MAX_ORDER = 12
# Characters of the training split counted, at most (the first ones): 20 million keep
# counting under about 2 GB at order 6.
MAX_TRAIN_CHARS = 20_000_000


def parse_baseline(spec: str, vocab_size: int) -> int:
    """`ngram:N` -> N, checked: its k-grams must fit an int64's digits in base V."""
    name, _, order = spec.partition(":")
    if name != "ngram" or not order.isdigit():
        raise CharlstmError(f"--baseline takes ngram:N, N the order (got {spec!r})")
    most = min(MAX_ORDER, int(63 / math.log2(max(vocab_size, 2))))
    if not 1 <= int(order) <= most:
        raise CharlstmError(
            f"--baseline ngram:N: N must be in 1..{most} for a vocabulary of {vocab_size}"
        )
    return int(order)


def _grams(ids: np.ndarray, k: int, base: int) -> np.ndarray:
    """The key of every k-gram of ids, in order (the one ending at ids[t] is [t-k+1])."""
    keys = ids[: len(ids) - k + 1].astype(np.int64)
    for j in range(1, k):
        keys = keys * base + ids[j : len(ids) - k + 1 + j]
    return keys


@dataclass
class _Order:
    keys: np.ndarray  # distinct k-grams, sorted
    counts: np.ndarray  # a_k of each
    contexts: np.ndarray  # distinct contexts (k-gram // V), sorted
    totals: np.ndarray  # A_k of each
    kinds: np.ndarray  # B_k of each
    discount: float


def _order(keys: np.ndarray, counts: np.ndarray, base: int) -> _Order:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    discount = n1 / (n1 + 2 * n2) if n1 and n2 else 0.5
    contexts, starts = np.unique(keys // base, return_index=True)
    totals = np.add.reduceat(counts, starts)
    kinds = np.diff(np.append(starts, len(keys)))
    return _Order(keys, counts, contexts, totals, kinds, discount)


def _lookup(table: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, found) of each key in a sorted table."""
    at = np.searchsorted(table, keys)
    at = np.minimum(at, max(len(table) - 1, 0))
    found = (table[at] == keys) if len(table) else np.zeros(len(keys), bool)
    return at, found


class KneserNey:
    """An interpolated Kneser-Ney character model of order N over V ids."""

    def __init__(self, ids: np.ndarray, order: int, vocab_size: int):
        self.order, self.base = order, vocab_size
        self.chars = len(ids)
        ids = np.asarray(ids, dtype=np.int64)
        self.orders: list[_Order] = []
        above = None  # the distinct (k+1)-grams, to count continuations from
        for k in range(order, 0, -1):
            if k == order:
                keys, counts = np.unique(_grams(ids, k, self.base), return_counts=True)
            else:  # how many distinct characters precede each k-gram
                keys, counts = np.unique(above % self.base**k, return_counts=True)
            self.orders.insert(0, _order(keys, counts, self.base))
            above = keys

    @property
    def bytes(self) -> int:
        """Memory its tables hold."""
        return sum(a.nbytes for o in self.orders for a in vars(o).values()
                   if isinstance(a, np.ndarray))  # fmt: skip

    def log_probs(self, ids: np.ndarray) -> np.ndarray:
        """ln P(ids[t] | the up to N-1 ids before it) for t = 1 .. len-1, as a network
        scores a text (the first id is context only)."""
        ids = np.asarray(ids, dtype=np.int64)
        p = np.full(len(ids), 1.0 / self.base)
        for k, table in enumerate(self.orders, start=1):
            grams = _grams(ids, k, self.base)  # grams[i] ends at ids[i + k - 1]
            where, seen = _lookup(table.keys, grams)
            a = np.where(seen, table.counts[where], 0)
            at, known = _lookup(table.contexts, grams // self.base)
            big_a, kinds = table.totals[at], table.kinds[at]
            lower = p[k - 1 :]
            d = table.discount
            mixed = (
                np.maximum(a - d, 0) / np.maximum(big_a, 1)
                + d * kinds / np.maximum(big_a, 1) * lower
            )
            p[k - 1 :] = np.where(known, mixed, lower)
        return np.log(p[1:])


# Where the network and the n-gram differ ------------------------------------------------
def char_class(char: str) -> str:
    if char == "\n":
        return "newline"
    if char in " \t":
        return "space"
    if char in "()[]{}<>":
        return "bracket"
    if char in "'\"`":
        return "quote"
    if char.isalpha():
        return "letter"
    if char.isdigit():
        return "digit"
    return "other"


DISTANCE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
MARKERS = {"since a newline": "\n", "since a bracket opened": "([{", "since a quote": "'\"`"}


def _bucket_names() -> list[str]:
    edges = DISTANCE_BUCKETS
    names = [f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in itertools.pairwise(edges)]
    return [*names, f"{edges[-1]}+", "none before"]


def _distances(chars: list[str], marks: str) -> np.ndarray:
    """For each position t >= 1, the characters between the last mark before t and t
    (1: the mark is just before it), or -1 when there is none."""
    at = np.arange(len(chars))
    seen = np.array([c in marks for c in chars])
    last = np.maximum.accumulate(np.where(seen, at, -1))
    before = last[:-1]  # the last mark at or before t - 1
    return np.where(before >= 0, at[1:] - before, -1)


def breakdown(chars: list[str], network: np.ndarray, ngram: np.ndarray) -> dict[str, list[dict]]:
    """Mean loss per character of each model (nats) and the share of characters the
    network predicts better, by the class of the character predicted and by its
    distance since the last newline, bracket opened or quote. `chars` is the text
    scored; both losses are of chars[1:]."""
    groups: dict[str, np.ndarray] = {"character": np.array([char_class(c) for c in chars[1:]])}
    names = _bucket_names()
    for title, marks in MARKERS.items():
        distance = _distances(chars, marks)
        bucket = np.searchsorted(DISTANCE_BUCKETS, distance, side="right") - 1
        groups[title] = np.where(distance < 0, names[-1], np.array(names)[np.maximum(bucket, 0)])
    found = {}
    for title, labels in groups.items():
        order = (sorted(set(labels.tolist())) if title == "character"
                 else [n for n in names if n in set(labels.tolist())])  # fmt: skip
        found[title] = [
            {"group": name, "chars": int(mask.sum()), "network": float(network[mask].mean()),
             "ngram": float(ngram[mask].mean()),
             "network_lower": float((network[mask] < ngram[mask]).mean())}
            for name in order
            if (mask := labels == name).any()
        ]  # fmt: skip
    return found


# At most this many characters of the scored text are compared (the first ones).
MAX_COMPARED_CHARS = 2_000_000


@dataclass
class Comparison:
    order: int
    train_chars: int
    table_bytes: int
    chars: int  # characters scored by both
    network_loss: float
    ngram_loss: float
    where: dict[str, list[dict]]
    seconds: float

    def to_dict(self) -> dict:
        return dict(vars(self))


def compare(net, vocab, train_ids: np.ndarray, scored: list[np.ndarray], order: int) -> Comparison:
    """The n-gram of `order` counted on train_ids beside the network, both scoring each
    of the `scored` texts (each character given those before it in its text; the
    network from a zero state: a document from its start), up to MAX_COMPARED_CHARS."""
    import time

    from charlstm.inspect.ablation import per_char_loss

    started = time.perf_counter()
    train_ids = np.asarray(train_ids[:MAX_TRAIN_CHARS], dtype=np.int64)
    if len(train_ids) < order:
        raise CharlstmError("--baseline: the training text is too short to count n-grams")
    ngram = KneserNey(train_ids, order, vocab.size)
    network_loss, ngram_loss, chars, budget = [], [], [], MAX_COMPARED_CHARS
    for text in scored:
        text = np.asarray(text[:budget], dtype=np.int64)
        if len(text) < 2:
            continue
        budget -= len(text)
        ngram_loss.append(-ngram.log_probs(text))
        network_loss.append(per_char_loss(net, text))
        chars += [vocab.decode([i]) or "\ufffd" for i in text.tolist()][int(bool(chars)) :]
        if budget < 2:
            break
    if not network_loss:
        raise CharlstmError("--baseline: nothing to score (texts of one character or none)")
    net_all, ngram_all = np.concatenate(network_loss), np.concatenate(ngram_loss)
    return Comparison(order, len(train_ids), ngram.bytes, len(net_all),
                      float(net_all.mean()), float(ngram_all.mean()),
                      breakdown(chars[: len(net_all) + 1], net_all, ngram_all),
                      time.perf_counter() - started)  # fmt: skip
