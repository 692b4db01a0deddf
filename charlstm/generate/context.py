"""Where generation starts: the ids a sample is conditioned on before its first draw.

A text model reads the prime, or without one a newline (the start of a line, which is
not shown). A document model reads what training read before every document: the
document start (the end id of the document before), its label, then the prime.
Sampling, search, document making and the server's streams all start here, so a seeded
text is the same whichever of them drew it.
"""

from __future__ import annotations

from charlstm.data.vocab import Vocab
from charlstm.options import SampleSettings


def line_start_id(vocab: Vocab) -> int:
    for char in ("\n", " "):
        found = vocab.id_of(char)
        if found is not None:
            return found
    return 0


def prime_context(vocab: Vocab, prime: str, unknown: str) -> tuple[str, list[int]]:
    """A text model's start: the prime as the model reads it (skipped characters
    dropped) and the ids it is conditioned on, the prime's or a line start."""
    prime_ids = vocab.encode(prime, unknown=unknown).tolist() if prime else []
    return vocab.decode(prime_ids), prime_ids or [line_start_id(vocab)]


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
