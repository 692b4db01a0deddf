"""The one way to generate. From the model and one SampleSettings it decides what is
drawn: plain samples, a search (beam or best-of), or whole documents from a document
model, and whether the text can be shown as it is drawn; it refuses what does not apply
before any work. `generate` returns one Generation, `stream` yields one text in pieces.
`Model.generate` and `Model.stream`, and through them the command line, the Python API,
the server's /sample and the trainer's log sample, are these two calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from charlstm.data.vocab import Vocab
from charlstm.errors import CharlstmError
from charlstm.generate.clamp import steered
from charlstm.generate.documents import Known, make_documents, sample_documents
from charlstm.generate.repetition import check_logit_bias
from charlstm.generate.result import Generated, Generation, likeliest
from charlstm.generate.sample import draw_texts, iter_samples
from charlstm.generate.search import beam_search, best_of
from charlstm.model import CharRNN
from charlstm.options import SampleSettings

DOCUMENT_OPTIONS = "--documents, --label, --unique and --novel"


@dataclass(frozen=True)
class Plan:
    """How a request is generated: `mode` ("sample", "search" or "documents"), and
    whether its text arrives in pieces as it is drawn (one plain sample does; a search
    knows its text at the end, a document is whole when its end is drawn)."""

    mode: str
    streams: bool


def plan(vocab: Vocab, settings: SampleSettings) -> Plan:
    """What `settings` asks of a model with this vocabulary; a document option given to
    a text model, or an unknown label, is one line here."""
    if settings.documents is not None or settings.label is not None:
        vocab.require_documents(DOCUMENT_OPTIONS)
    if settings.label is not None:
        vocab.label_id(settings.label)
    check_logit_bias(settings, vocab.size)
    if settings.beam is not None or settings.best_of is not None:
        return Plan("search", streams=False)
    if vocab.documents:
        return Plan("documents", streams=False)
    return Plan("sample", streams=settings.num_samples == 1)


def generate(
    net: CharRNN,
    vocab: Vocab,
    settings: SampleSettings,
    known: Callable[[], Known | None] = lambda: None,
    on_text: Callable[[int, str], None] | None = None,
) -> Generation:
    """What `settings` asks of this model. `known` gives a document model's training
    documents (to tell new ones, and for --novel) only when documents are drawn;
    `on_text(sample, piece)` receives plain samples' text as it becomes final."""
    mode = plan(vocab, settings).mode
    net = steered(net, settings)
    prime = settings.prime
    if mode == "search":
        return Generation(mode, [_search(net, vocab, settings)], asked=1)
    if mode == "documents":
        count = settings.documents or settings.num_samples
        # each document ends at its own end id: a stop string and a batch size do not apply
        one = replace(settings, documents=count, num_samples=1, stop=None)
        made, tally = sample_documents(net, vocab, one, prime, known())
        return Generation(mode, made, asked=count, tally=tally)
    texts = draw_texts(net, vocab, prime, settings, on_text)
    return Generation(mode, [Generated(t) for t in texts], asked=settings.num_samples)


def _search(net: CharRNN, vocab: Vocab, settings: SampleSettings) -> Generated:
    if settings.beam is not None:
        return beam_search(net, vocab, settings.prime, settings)
    if vocab.documents:  # best of N whole documents, drawn as one batch
        return likeliest(make_documents(net, vocab, settings, settings.prime, settings.best_of))
    return best_of(net, vocab, settings.prime, settings)


def stream(
    net: CharRNN,
    vocab: Vocab,
    settings: SampleSettings,
    known: Callable[[], Known | None] = lambda: None,
) -> Iterator[str]:
    """One text in pieces, the prime first; joined, exactly the text `generate` makes
    with the same settings. A request that does not stream (a search, or a document,
    which is whole when its end is drawn) comes as one piece; more than one text is
    refused before any work."""
    where = plan(vocab, settings)
    net = steered(net, settings)
    if settings.num_samples != 1 or (settings.documents or 1) != 1:
        raise CharlstmError("stream writes one text: ask for one sample or one document")
    if not where.streams:
        return iter(generate(net, vocab, settings, known).texts)
    return (piece for _, piece in iter_samples(net, vocab, settings.prime, settings))
