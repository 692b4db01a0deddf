"""`charlstm eval`: the loss of a checkpoint on a text, its validation split, documents
(one by one from the document start) or a synthetic task (exact match)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import (
    DEFAULT_DEVICE,
    AblateOpt,
    CheckpointOpt,
    DeviceOpt,
    err,
    json_line,
    load_model,
    option_of,
    out,
    write_out,
)
from charlstm.errors import CharlstmError
from charlstm.interrupt import StopRequests
from charlstm.options import ScoreSettings, TaskExamples

Score, Task = ScoreSettings(), TaskExamples()

TextOpt = Annotated[Path | None, typer.Option("--text", help="A file to score.")]
SplitOpt = Annotated[
    str | None, typer.Option("--split", help="'val': the training corpus's validation split.")
]
StreamsOpt = Annotated[int, option_of(ScoreSettings, "streams", "--streams")]
WindowOpt = Annotated[int, option_of(ScoreSettings, "window", "--window")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")]
DocumentsOpt = Annotated[
    Path | None,
    typer.Option(
        "--documents",
        help="Document models: score each line of this file (or each record of a .jsonl "
        "file: text, label) as a document of its own.",
    ),
]
JsonlOpt = Annotated[
    bool, typer.Option("--jsonl", help="With --documents: one JSON object per document.")
]
BaselineOpt = Annotated[
    str | None,
    typer.Option(
        "--baseline",
        help="ngram:N: a character N-gram (interpolated Kneser-Ney) counted on the training "
        "split, scored beside the network, with where they differ.",
    ),
]
TaskOpt = Annotated[
    str | None, typer.Option("--task", help="Exact-match score on a synthetic task instead.")
]


def evaluate(
    checkpoint: CheckpointOpt = None,
    text: TextOpt = None,
    split: SplitOpt = None,
    streams: StreamsOpt = Score.streams,
    window: WindowOpt = Score.window,
    as_json: JsonOpt = False,
    documents: DocumentsOpt = None,
    as_jsonl: JsonlOpt = False,
    device: DeviceOpt = DEFAULT_DEVICE,
    task: TaskOpt = None,
    n_min: Annotated[int, option_of(TaskExamples, "n_min", "--n-min")] = Task.n_min,
    n_max: Annotated[int, option_of(TaskExamples, "n_max", "--n-max")] = Task.n_max,
    count: Annotated[int, option_of(TaskExamples, "count", "--count")] = Task.count,
    seed: Annotated[int, option_of(TaskExamples, "seed", "--seed")] = Task.seed,
    ablate: AblateOpt = None,
    baseline: BaselineOpt = None,
) -> None:
    """Loss, bits per character and perplexity of a checkpoint on a text.

    Or on the training corpus's validation split, on documents one by one, or (--task)
    its exact-match accuracy on fresh examples of a synthetic language."""
    from charlstm.data.tasks import check_task_options

    if documents is None and as_jsonl:
        raise CharlstmError("--jsonl scores documents: give --documents FILE")
    if task is not None:
        check_task_options(task, count, n_min, n_max)
    model = load_model(checkpoint, device)
    order = None
    if baseline is not None:
        from charlstm.inspect.ngram import parse_baseline

        if documents is not None or task is not None:
            raise CharlstmError("--baseline compares on a text: give --split val or --text FILE")
        order = parse_baseline(baseline, model.vocab.size)
    silenced = model.ablated(ablate) if ablate is not None and documents is None else None
    with StopRequests():
        if documents is not None:
            _score_documents(model, documents, as_jsonl)
        elif task is not None:
            _score_task(model, silenced, task, count, seed, n_min, n_max, as_json, ablate)
        else:
            compared = model.compare_ngram(order, text, err) if order is not None else None
            _score_text(model, silenced, text, split, streams, window, as_json, ablate, compared)


def _score_text(model, silenced, text, split, streams, window, as_json, ablate,
                compared=None) -> None:  # fmt: skip
    result = model.evaluate(text, split, streams, window, show_progress=True, console=err)
    numbers = {"loss": result.loss, "bpc": result.bpc, "perplexity": result.perplexity,
               "chars": result.chars, "chars_per_sec": result.chars_per_sec}  # fmt: skip
    if silenced is not None:
        ablated = silenced.evaluate(text, split, streams, window)
        numbers.update(ablated_loss=ablated.loss, ablated_units=_units(ablate))
    per_label = model.evaluate_documents()[1] if split is not None and model.vocab.labels else {}
    if per_label:
        numbers["loss_per_label"] = per_label
    if compared is not None:
        numbers["baseline"] = compared.to_dict()
    if as_json:
        sys.stdout.write(json.dumps(numbers) + "\n")
        return
    out.print(
        f"loss {result.loss:.4f} nats/char  bpc {result.bpc:.4f}  "
        f"perplexity {result.perplexity:.3f}\n"
        f"{result.chars:,} characters scored at {result.chars_per_sec:,.0f} chars/s"
    )
    if silenced is not None:
        change = ablated.loss - result.loss
        out.print(f"with {ablate} ablated: loss {ablated.loss:.4f} nats/char ({change:+.4f}), "
                  f"bpc {ablated.bpc:.4f}")  # fmt: skip
    if result.unknown:
        out.print(f"{result.unknown:,} characters outside the vocabulary were left out")
    for name, loss in per_label.items():
        out.print(f"  label {name}: loss {loss:.4f} nats/char", markup=False)
    if compared is not None:
        _show_comparison(compared)


def _show_comparison(c) -> None:
    lower = c.ngram_loss - c.network_loss
    verdict = f"{abs(lower):.4f} {'lower' if lower >= 0 else 'higher'}"
    out.print(
        f"\nbaseline: a {c.order}-gram, interpolated Kneser-Ney, counted on "
        f"{c.train_chars:,} training characters ({c.table_bytes / 1e6:.1f} MB of counts; "
        f"{c.seconds:.1f} s with the comparison)\n"
        f"on {c.chars:,} characters: n-gram {c.ngram_loss:.4f} nats/char, network "
        f"{c.network_loss:.4f} (one pass from the start): the network is {verdict}",
        markup=False,
    )
    for title, rows in c.where.items():
        out.print(f"{title:<24}{'chars':>10}{'network':>9}{'n-gram':>9}  network lower on",
                  markup=False)  # fmt: skip
        for r in rows:
            out.print(f"  {r['group']:<22}{r['chars']:>10,}{r['network']:>9.3f}{r['ngram']:>9.3f}"
                      f"  {r['network_lower']:.0%}", markup=False)  # fmt: skip


def _score_task(model, silenced, task, count, seed, n_min, n_max, as_json, ablate) -> None:
    from charlstm.evaluate import score_task

    score = score_task(model.net, model.vocab, task, count, seed, n_min, n_max)
    numbers = score.to_dict()
    if silenced is not None:
        ablated = score_task(silenced.net, model.vocab, task, count, seed, n_min, n_max)
        numbers.update(ablated_accuracy=ablated.accuracy, ablated_units=_units(ablate))
    if as_json:
        sys.stdout.write(json.dumps(numbers) + "\n")
        return
    out.print(f"{task}: {score.accuracy:.1%} exact ({score.correct}/{score.total})")
    for n, (c, t) in sorted(score.per_n.items()):
        out.print(f"  N={n:>3}: {c / t:6.1%} ({c}/{t})")
    if silenced is not None:
        out.print(f"with {ablate} ablated: {ablated.accuracy:.1%} exact")


def _units(ablate: str) -> list[list[int]]:
    from charlstm.inspect.ablation import parse_units

    return [[layer, unit] for layer, unit in parse_units(ablate)]


def _score_documents(model, path: Path, as_jsonl: bool) -> None:
    """Each document scored from the document start, in the file's order."""
    from charlstm.data.split import read_documents
    from charlstm.model import bits_per_char

    model.vocab.require_documents("--documents", "use --text FILE")
    docs = read_documents(path, model.config.data)
    for label in sorted({label for label, _ in docs if label is not None}):
        model.vocab.label_id(label)  # an unknown label: one line before any work
    scores = [None] * len(docs)
    for label in dict.fromkeys(label for label, _ in docs):
        where = [i for i, (lab, _) in enumerate(docs) if lab == label]
        texts = [docs[i][1] for i in where]
        scored = model.score_documents(texts, label, show_progress=True, console=err)
        for i, score in zip(where, scored, strict=True):
            scores[i] = score
    if as_jsonl:
        write_out("".join(json_line(s.to_dict()) for s in scores))
        return
    total = -sum(s.log_prob for s in scores)
    predictions = sum(s.chars + 1 for s in scores)
    loss = total / max(predictions, 1)
    out.print(
        f"{len(scores):,} documents: loss {loss:.4f} nats/char  bpc {bits_per_char(loss):.4f} "
        f"({predictions:,} predictions, each end included)"
    )
