"""Where generation starts: the ids a sample is conditioned on before its first draw.

A text model reads a newline (the start of a line, not shown), then the prime. The zero
state is no place in a text: training carries the state from window to window, so the
model meets it only where a stream begins, mid-line as often as not. Read from there,
`def ` on a code model was followed by a space 80% of the time (and greedy and beam text
by dozens of them); after a line start, by a name. A document model reads what training
read before every document: the document start (the end id of the document before), its
label, then the prime.
Sampling, search, document making and the server's streams all start here, so a seeded
text is the same whichever of them drew it.
"""

from __future__ import annotations

import torch

from charlstm.data.vocab import Vocab
from charlstm.model import CharRNN, State
from charlstm.options import SampleSettings

# A long prime is read this many characters at a time, the state carried: warming up
# costs the state and one window's activations, not the whole prime's (a 1 MB prime
# read at once held its logits for every character: gigabytes).
WARM_WINDOW = 4096


def line_start_id(vocab: Vocab) -> int:
    for char in ("\n", " "):
        found = vocab.id_of(char)
        if found is not None:
            return found
    return 0


def prime_context(vocab: Vocab, prime: str, unknown: str) -> tuple[str, list[int]]:
    """A text model's start: the prime as the model reads it (skipped characters
    dropped) and the ids it is conditioned on, a line start then the prime's."""
    prime_ids = vocab.encode(prime, unknown=unknown).tolist() if prime else []
    return vocab.decode(prime_ids), [line_start_id(vocab), *prime_ids]


def document_context(vocab: Vocab, prime: str, settings: SampleSettings) -> tuple[str, list[int]]:
    """A document model's start: the prime as read and the ids each document is
    conditioned on, the document start, its label, then the prime."""
    start = vocab.document_start(settings.label)
    prime_ids = vocab.encode(prime, unknown=settings.unknown).tolist() if prime else []
    return vocab.decode(prime_ids), start + prime_ids


def start_context(vocab: Vocab, prime: str, settings: SampleSettings) -> tuple[str, list[int]]:
    """The start for this model: a document model's document start, a text model's
    line start (see the module's docstring)."""
    if vocab.documents:
        return document_context(vocab, prime, settings)
    return prime_context(vocab, prime, settings.unknown)


def warm_state(net: CharRNN, context: list[int], rows: int) -> State | None:
    """The state after reading all but the last context id (the first step's input), the
    same for `rows` rows; None when there is nothing to read."""
    device = next(net.parameters()).device
    state = None
    for at in range(0, len(context) - 1, WARM_WINDOW):
        window = context[at : min(at + WARM_WINDOW, len(context) - 1)]
        _, state = net(torch.tensor(window, device=device).expand(rows, -1), state)
    return state
