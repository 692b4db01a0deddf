"""charlstm from Python: load a trained model, generate with it, score text with it.

    >>> import charlstm
    >>> model = charlstm.load("runs/python-code")       # a file, a run folder, or None
    >>> print(model.sample(prime="def ", length=200, seed=1))
    >>> model.generate(prime="def ", beam=8).samples[0].bpc   # the one entry point
    >>> for piece in model.stream(prime="class ", length=500):
    ...     print(piece, end="", flush=True)
    >>> model.score("for i in range(10):\\n    print(i)\\n").bpc

The command line and the server are built on this module: `charlstm sample`, `eval` and
`inspect` and the server's /sample make the same calls, so the same arguments give the
same text and the same numbers. Errors
are charlstm's own exceptions (CharlstmError and its subclasses), never an exit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from rich.console import Console

from charlstm.checkpoint import Checkpoint, load_for_inference, resolve_checkpoint
from charlstm.config import Config
from charlstm.data.corpus import read_text_file
from charlstm.data.split import load_split
from charlstm.data.vocab import Vocab
from charlstm.device import pick_device
from charlstm.errors import CharlstmError
from charlstm.evaluate import (
    DocumentScore,
    EvalResult,
    check_eval_options,
    check_scoring,
    evaluate_ids,
    evaluate_on,
    score_split,
    score_texts,
)
from charlstm.evaluate import evaluate_text as _evaluate_text
from charlstm.generate.clamp import steered
from charlstm.generate.documents import Known, known_documents
from charlstm.generate.result import Generated, Generation, Tally
from charlstm.generate.run import generate, plan, stream
from charlstm.generate.suggest import Suggestion, next_chars, next_words
from charlstm.inspect.ablation import ablated, parse_units
from charlstm.model import CharRNN
from charlstm.options import RUN_DEVICE, SampleSettings, ScoreSettings, SuggestSettings

if TYPE_CHECKING:
    from charlstm.inspect.pipeline import Inspection

# The keyword defaults of score(): the settings' own.
_SCORE = ScoreSettings()


def load(path: str | Path | None = None, device: str | torch.device = RUN_DEVICE) -> Model:
    """A trained model, ready to sample and score.

    path: a checkpoint file, a run folder (its best.pt, else last.pt), or None for the
        newest run under ./runs.
    device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps"; by
        default the CPU, as for every command that runs a trained model. A checkpoint
        saved on a GPU loads anywhere.
    """
    where = device if isinstance(device, torch.device) else pick_device(device, "device")
    file = resolve_checkpoint(Path(path) if path is not None else None)
    net, saved = load_for_inference(file, where)
    return Model(net, saved, where, file)


class Model:
    """A trained character model. Attributes: `vocab` (its Vocab), `config` (the
    resolved Config it was trained with), `step` (training steps behind it), `device`,
    `path` (the checkpoint file it was loaded from) and `net`, the torch module itself
    (CharRNN)."""

    def __init__(self, net: CharRNN, saved: Checkpoint, device: torch.device, path: Path):
        self.net = net
        self.path = path
        self.vocab: Vocab = saved.vocab
        self.config: Config = saved.config
        self.step = saved.step
        self.device = device
        self.best_val_loss = saved.best_val_loss
        self._corpus_key = saved.corpus_key
        self._known: Known | None = None
        self.last_tally: Tally | None = None  # what sample_documents drew last

    def __repr__(self) -> str:
        m = self.config.model
        return (
            f"<charlstm.Model {m.num_layers}x{m.hidden_size} {m.cell}, vocab {self.vocab.size} "
            f"({self.vocab.mode}), step {self.step}, on {self.device}>"
        )

    def ablated(self, units: str | list[tuple[int, int]]) -> Model:
        """This model with the given units' h and c held at 0 at every step ("0:5,1:12",
        or [(layer, unit), ...], counted from 0): see ablation.py."""
        chosen = parse_units(units) if isinstance(units, str) else list(units)
        return self._with_net(ablated(self.net, chosen))

    def _with_net(self, net: CharRNN) -> Model:
        """This model with another network of its shape (ablated, or clamped)."""
        if net is self.net:
            return self
        other = Model.__new__(Model)
        other.__dict__.update(self.__dict__)
        other.net = net
        return other

    # -- generation --------------------------------------------------------------------
    def generate(
        self,
        settings: SampleSettings | None = None,
        on_text: Callable[[int, str], None] | None = None,
        **options: Any,
    ) -> Generation:
        """The one way to generate: plain samples, a search (beam or best-of) or whole
        documents, as `settings` (or the same fields as keywords: prime, length,
        temperature, top_k, top_p, greedy, seed, num_samples, stop, unknown, beam,
        best_of, documents, unique, novel, label; see SampleSettings for each) ask of
        this model. Returns a Generation: `.mode`, `.texts`, and `.samples`, each with
        its log-probability where it is known (searches and documents). `on_text(i,
        piece)` receives plain samples' text as it is generated. The command line and
        the server's /sample are this call."""
        settings = settings if settings is not None else SampleSettings(**options)
        made = generate(self.net, self.vocab, settings, lambda: self._known_for(settings),
                        on_text)  # fmt: skip
        if made.tally is not None:
            self.last_tally = made.tally
        return made

    def sample(self, prime: str = "", **options: Any) -> str | list[str]:
        """Text that begins with `prime`: one text, or a list of texts when num_samples > 1
        (or when a document model makes several documents). Options as `generate`."""
        texts = self.generate(prime=prime, **options).texts
        return texts[0] if len(texts) == 1 and options.get("num_samples", 1) == 1 else texts

    def search(self, prime: str = "", **options: Any) -> Generated:
        """As `sample` with `beam=K` or `best_of=N` (one of them), returning the text with
        its log-probability: `.text`, `.log_prob` (nats, of what follows the prime),
        `.chars` and `.bpc`."""
        settings = SampleSettings(prime=prime, **options)
        if settings.beam is None and settings.best_of is None:
            raise CharlstmError("search() needs beam=K or best_of=N")
        return self.generate(settings).samples[0]

    def sample_documents(
        self, count: int = 10, prime: str = "", known: Known | None = None, **options: Any
    ) -> list[Generated]:
        """`count` whole new documents from a document model (data.documents), each with
        `.text`, `.log_prob`, `.bpc`, `.chars` and `.ended` (False: cut at `length`).
        Options as `sample`, and `unique` (no text twice), `novel` (none found verbatim
        in the training split; the corpus is read to know) and `label` (generate for this
        label). `last_tally` then says how many were drawn, repeated, and were training,
        held-out or new documents (when the corpus is at hand). `known`: the training
        documents to tell new ones by, kept for later calls (default: read from the
        corpus when it is here)."""
        self.vocab.require_documents("sample_documents()", "use sample()")
        settings = SampleSettings(prime=prime, documents=count, **options)
        if known is not None:
            self._known = known
        return self.generate(settings).samples

    def _known_for(self, settings: SampleSettings) -> Known | None:
        """The training documents, to tell new ones by; None when the corpus is not
        here, unless --novel needs them."""
        try:
            return self.known_documents()
        except CharlstmError:
            if settings.novel:
                raise
            return None

    def known_documents(self, console: Console | None = None) -> Known:
        """The training and held-out documents of the corpus this model was trained on
        (read from it, which must still be that text)."""
        if self._known is None:
            split = load_split(
                self.config.data, self.vocab, self._corpus_key, "tell new documents", console
            )
            self._known = known_documents(
                split.texts(self.vocab, split.train), split.texts(self.vocab, split.val)
            )
        return self._known

    def stream(self, prime: str = "", **options: Any) -> Iterator[str]:
        """As `sample`, with the same keyword options, but yields the text in pieces as it
        is generated (the prime first); joined, the pieces are exactly what `sample`
        returns (a search, or a document, comes whole). One text: num_samples and
        documents 1."""
        return self.stream_settings(SampleSettings(prime=prime, **options))

    def stream_settings(self, settings: SampleSettings) -> Iterator[str]:
        """`stream` from one SampleSettings (POST /sample with stream: true)."""
        return stream(self.net, self.vocab, settings, lambda: self._known_for(settings))

    def next_chars(self, prime: str = "", n: int = 10, **options: Any) -> list[Suggestion]:
        """The n likeliest next characters after `prime`, each with `.text` and `.prob`
        (the model's own, temperature 1), most likely first; a document model's end is
        `.ends`. Options: `unknown`, `label` (as `sample`)."""
        settings = SampleSettings(prime=prime, **options)
        asked = SuggestSettings(chars=n, words=0)
        return next_chars(self.net, self.vocab, settings, asked.chars)

    def next_words(self, prime: str = "", n: int = 5, **options: Any) -> list[Suggestion]:
        """The n likeliest next words after `prime` (the rule: docs/pages/sampling.md),
        each with `.text` and `.prob`, most likely first; for a document model, the n
        likeliest completions of the document. Options as `next_chars`."""
        settings = SampleSettings(prime=prime, **options)
        asked = SuggestSettings(chars=0, words=n)
        return next_words(self.net, self.vocab, settings, asked.words)

    def suggest(
        self, settings: SampleSettings, asked: SuggestSettings
    ) -> dict[str, list[Suggestion]]:
        """`charlstm suggest` and POST /suggest in one call: {"chars": [...], "words":
        [...]} after settings.prime (read with its unknown and label), as many of each as
        `asked` says (0: none). A label on a text model is one line before any work."""
        plan(self.vocab, settings)
        model = self._with_net(steered(self.net, settings))  # --clamp
        options = {"unknown": settings.unknown, "label": settings.label}
        return {
            "chars": model.next_chars(settings.prime, asked.chars, **options)
            if asked.chars
            else [],
            "words": model.next_words(settings.prime, asked.words, **options)
            if asked.words
            else [],
        }

    # -- looking inside ----------------------------------------------------------------
    def inspect(self, text: str, **options: Any) -> Inspection:
        """Record every unit on `text`, rank the units that follow its features, ablate
        each feature's top unit: `charlstm inspect` (options: see
        charlstm.inspect.inspect_text). `.write(path)` writes the report."""
        from charlstm.inspect.pipeline import inspect_text

        return inspect_text(self, text, **options)

    # -- scoring -----------------------------------------------------------------------
    def score(
        self, text: str, streams: int = _SCORE.streams, window: int = _SCORE.window
    ) -> EvalResult:
        """Loss of `text` under the model: `.loss` (nats per character), `.bpc`,
        `.perplexity`, `.chars` (characters scored) and `.unknown` (characters outside
        the vocabulary, left out). Each character is scored given everything before it;
        `streams` contiguous stretches are scored side by side (1 = the exact single
        pass), `window` only bounds memory."""
        check_scoring(streams, window)
        if self.vocab.mode == "byte":
            ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
            return evaluate_ids(self.net, ids, streams=streams, window=window)
        return _evaluate_text(self.net, self.vocab, text, streams=streams, window=window)

    def score_documents(
        self,
        texts: list[str],
        label: str | None = None,
        show_progress: bool = False,
        console: Console | None = None,
    ) -> list[DocumentScore]:
        """Each text scored as a whole document from the document start, in input order
        (batched): `.loss` (nats per prediction, the end included), `.bpc`, `.log_prob`,
        `.chars`. Rank candidates, find typos and outliers."""
        self.vocab.require_documents("score_documents()", "use score()")
        return score_texts(self.net, self.vocab, list(texts), label,
                           show_progress=show_progress, console=console)  # fmt: skip

    def evaluate_documents(self, console: Console | None = None) -> tuple[EvalResult, dict]:
        """The held-out documents of the training corpus, each scored from its start: the
        result and the loss per label (empty without labels)."""
        split = load_split(
            self.config.data, self.vocab, self._corpus_key, "score its held-out documents",
            console,
        )  # fmt: skip
        return score_split(self.net, self.vocab, split, split.val)

    def compare_ngram(self, order: int, text_file: Path | None = None, console=None):
        """An n-gram baseline of `order` (interpolated Kneser-Ney) counted on the training
        split, beside this model on the validation split (or a file): both losses and
        where they differ (charlstm/inspect/ngram.py)."""
        from charlstm.data.corpus import training_corpus
        from charlstm.inspect.ngram import compare

        if self.vocab.documents:  # the documents as streams, each end id between two
            split = load_split(self.config.data, self.vocab, self._corpus_key,
                               "count its training documents", console)  # fmt: skip
            train, scored = split.train_stream(), [split.span(int(d)) for d in split.val]
        else:
            corpus = training_corpus(self.config.data, self.vocab, self._corpus_key,
                                     "count its training split", console)  # fmt: skip
            train, val = corpus.split(self.config.data.val_fraction)
            scored = [val]
        if text_file is not None:
            scored = [self.vocab.encode(read_text_file(Path(text_file)), unknown="skip")]
        return compare(self.net, self.vocab, train, scored, order)

    def evaluate(
        self,
        text_file: Path | None = None,
        split: str | None = None,
        streams: int = _SCORE.streams,
        window: int = _SCORE.window,
        show_progress: bool = False,
        console: Console | None = None,
    ) -> EvalResult:
        """Score a file, or (split="val") the validation split of the corpus the model
        was trained on, which must still be that text: what `charlstm eval` prints. A
        document model scores a file as one document read from the document start, its
        end predicted too (one exact pass), and the split as its held-out documents."""
        if self.vocab.documents:
            check_eval_options(text_file, split, streams, window)
            if split is not None:
                return self.evaluate_documents(console)[0]
            text = read_text_file(Path(text_file))
            ids = self.vocab.document_start() + self.vocab.encode(text).tolist()
            ids = np.asarray(ids + [self.vocab.end_id])
            return evaluate_ids(self.net, ids, streams=1, window=window)
        return evaluate_on(
            self.net,
            self.vocab,
            self.config,
            text=Path(text_file) if text_file is not None else None,
            split=split,
            corpus_key=self._corpus_key,
            streams=streams,
            window=window,
            show_progress=show_progress,
            console=console,
        )
