"""The one way to generate. From the model and one SampleSettings it decides what is
drawn: plain samples, a search (beam or best-of), or whole documents from a document
model; it refuses what does not apply before any work; and it returns one Generation.
`Model.generate`, and through it the command line, the Python API and the server's
/sample, are all this call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from charlstm.data.vocab import Vocab
from charlstm.generate.documents import Known, sample_documents
from charlstm.generate.result import Generated, Generation
from charlstm.generate.sample import generate as draw_texts
from charlstm.generate.search import beam_search, best_of
from charlstm.model import CharRNN
from charlstm.options import SampleSettings

DOCUMENT_OPTIONS = "--documents, --label, --unique and --novel"


def mode_of(vocab: Vocab, settings: SampleSettings) -> str:
    """ "search", "documents" or "sample"; a document option given to a text model, or an
    unknown label, is one line here."""
    if settings.documents is not None or settings.label is not None:
        vocab.require_documents(DOCUMENT_OPTIONS)
    if settings.label is not None:
        vocab.label_id(settings.label)
    if settings.beam is not None or settings.best_of is not None:
        return "search"
    return "documents" if vocab.documents else "sample"


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
    mode = mode_of(vocab, settings)
    prime = settings.prime
    if mode == "search":
        search = beam_search if settings.beam is not None else best_of
        return Generation(mode, [search(net, vocab, prime, settings)], asked=1)
    if mode == "documents":
        count = settings.documents or settings.num_samples
        # each document ends at its own end id: a stop string and a batch size do not apply
        one = replace(settings, documents=count, num_samples=1, stop=None)
        made, tally = sample_documents(net, vocab, one, prime, known())
        return Generation(mode, made, asked=count, tally=tally)
    texts = draw_texts(net, vocab, prime, settings, on_text)
    return Generation(mode, [Generated(t) for t in texts], asked=settings.num_samples)
