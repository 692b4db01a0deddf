"""The `charlstm` command: parse options, call one function, report.

A CharlstmError (a user's mistake) leaves as one line on stderr and exit code 1; so do
the command-line parser's own complaints when run through `main`.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from charlstm.errors import CharlstmError
from charlstm.interrupt import StopRequests
from charlstm.options import (
    InspectSettings,
    SampleSettings,
    ScoreSettings,
    ServeSettings,
    TaskExamples,
    help_of,
)
from charlstm.rundir import RunDir

# Windows has no SIGPIPE; a closed pipe there still ends with the status it has on Unix.
SIGPIPE = getattr(signal, "SIGPIPE", 13)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Character-level LSTM language models: train, sample, eval, info.",
)
out = Console(highlight=False, soft_wrap=True)  # long paths stay on one line
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Each option's default and help live on its settings field (charlstm/options.py).
S, Score, Task, Look = SampleSettings(), ScoreSettings(), TaskExamples(), InspectSettings()


def _opt(settings: object, name: str, *flags: str) -> typer.models.OptionInfo:
    return typer.Option(*flags, help=help_of(type(settings), name))


CheckpointOpt = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="A checkpoint file or run folder (default: newest run under runs/).",
    ),
]


def write_out(text: str) -> None:
    """Text to stdout, at once. When the reader has gone (`charlstm sample | head -c 20`)
    the command ends quietly with the status of a process killed by SIGPIPE, as other
    Unix tools do; later writes (Python's own flush at exit) go nowhere."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(128 + SIGPIPE) from None


def check_out_file(path: Path | None, option: str) -> None:
    """A file a command will write: its folder must exist (checked before any work)."""
    if path is not None and not path.parent.is_dir():
        raise CharlstmError(f"{option} {path}: no folder {path.parent} to write it in")


def fail(error: CharlstmError) -> typer.Exit:
    err.print(f"{error.prefix}{error}", markup=False, soft_wrap=True)
    return typer.Exit(error.exit_code)


@app.command()
def train(
    config: Annotated[Path | None, typer.Option("--config", help="YAML config file.")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.key=value (repeatable).")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Continue the run in this folder from its last.pt."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Plain progress lines, no bar.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the run already in train.out_dir.")
    ] = False,
) -> None:
    """Train a model (see configs/ for examples)."""
    from charlstm.config import load_config
    from charlstm.training.resume import restart_run, resume_checkpoint
    from charlstm.training.trainer import Trainer

    try:
        saved, overrides = None, list(set_ or [])
        run = None
        if resume is None:
            cfg = load_config(config, overrides)
            run = restart_run(cfg)  # under torchrun, after a rank died
            overwrite = overwrite and run is None
        if resume is not None or run is not None:
            saved, run = resume_checkpoint(resume if resume is not None else run.root)
            overrides = [f"train.out_dir={run}", *overrides]
            cfg = (
                load_config(config, overrides) if config else saved.config.with_overrides(overrides)
            )
        with StopRequests():
            trainer = Trainer(cfg, resume=saved, console=out, quiet=quiet, overwrite=overwrite)
            summary = trainer.run()
    except CharlstmError as error:
        raise fail(error) from None
    if not trainer.is_main:  # under torchrun, one summary for the whole run
        return
    run = RunDir(summary.out_dir)
    out.print(
        f"done: {summary.steps} steps in {summary.seconds:.0f}s, best val loss "
        f"{summary.best_val_loss:.4f} ({summary.best_val_loss / math.log(2):.4f} bpc)\n"
        f"checkpoints: {run.best} and {run.last}\n"
        f'sample with: charlstm sample --checkpoint {summary.out_dir} --prime "..."'
    )


@app.command()
def sample(
    checkpoint: CheckpointOpt = None,
    prime: Annotated[
        str, typer.Option("--prime", "-p", help="Text to start from; the output begins with it.")
    ] = "",
    length: Annotated[int, _opt(S, "length", "--length", "-n")] = S.length,
    temperature: Annotated[float, _opt(S, "temperature", "--temperature", "-t")] = S.temperature,
    top_k: Annotated[int | None, _opt(S, "top_k", "--top-k")] = S.top_k,
    top_p: Annotated[float | None, _opt(S, "top_p", "--top-p")] = S.top_p,
    greedy: Annotated[bool, _opt(S, "greedy", "--greedy")] = S.greedy,
    seed: Annotated[int | None, _opt(S, "seed", "--seed")] = S.seed,
    num_samples: Annotated[int, _opt(S, "num_samples", "--num-samples")] = S.num_samples,
    stop: Annotated[str | None, _opt(S, "stop", "--stop")] = S.stop,
    unknown: Annotated[str, _opt(S, "unknown", "--unknown")] = S.unknown,
    beam: Annotated[int | None, _opt(S, "beam", "--beam")] = S.beam,
    best_of: Annotated[int | None, _opt(S, "best_of", "--best-of")] = S.best_of,
    documents: Annotated[int | None, _opt(S, "documents", "--documents")] = S.documents,
    unique: Annotated[bool, _opt(S, "unique", "--unique")] = S.unique,
    novel: Annotated[bool, _opt(S, "novel", "--novel")] = S.novel,
    label: Annotated[str | None, _opt(S, "label", "--label")] = S.label,
    as_jsonl: Annotated[
        bool,
        typer.Option(
            "--jsonl", help="Documents: one JSON object each (text, log_prob, bpc, chars)."
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Also write the samples to this file.")
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N, mps or auto.")
    ] = "cpu",
    ablate: Annotated[
        str | None,
        typer.Option("--ablate", help="LAYER:UNIT[,...]: hold these units' h and c at 0."),
    ] = None,
) -> None:
    """Generate text from a checkpoint, streaming it as it is generated."""
    from charlstm.api import load
    from charlstm.device import pick_device
    from charlstm.inspect.ablation import parse_units

    options = dict(
        prime=prime, length=length, temperature=temperature, top_k=top_k, top_p=top_p,
        greedy=greedy, seed=seed, num_samples=num_samples, stop=stop, unknown=unknown,
        beam=beam, best_of=best_of,
    )  # fmt: skip
    chosen = dict(documents=documents, unique=unique, novel=novel, label=label)
    try:
        checked = SampleSettings(**{k: v for k, v in options.items() if k != "prime"}, **chosen)
        if as_jsonl and documents is None:
            raise CharlstmError("--jsonl writes documents: give --documents N")
        check_out_file(output, "--output")
        units = parse_units(ablate) if ablate is not None else []
        model = load(checkpoint, pick_device(device))
        if units:
            model = model.ablated(units)
        if model.vocab.documents and label is not None:
            model.vocab.label_id(label)  # an unknown label: one line before any work
        if model.vocab.documents and beam is None and best_of is None:
            count = documents or num_samples
            with StopRequests():
                made = _documents(model, count, options, checked, as_jsonl)
            _write_documents(made, as_jsonl, output)
            return
        if documents is not None or label is not None:
            raise CharlstmError(
                "--documents and --label need a document model (trained with data.documents)"
            )
        with StopRequests():
            if beam is not None or best_of is not None:  # known whole at the end
                found = model.search(**options)
                write_out(found.text)
                texts = [found.text]
                err.print(
                    f"log-probability {found.log_prob:.3f} nats over {found.chars} characters, "
                    f"{found.bpc:.3f} bits per character",
                    markup=False,
                )
            elif num_samples == 1:  # streamed as it is generated
                pieces = []
                for piece in model.stream(**options):
                    write_out(piece)
                    pieces.append(piece)
                texts = ["".join(pieces)]
            else:
                texts = model.sample(**options)
    except CharlstmError as error:
        raise fail(error) from None
    separator = "\n" + "-" * 40 + "\n"
    write_out("\n" if num_samples == 1 else separator.join(texts) + "\n")
    if output is not None:
        try:
            output.write_text(separator.join(texts) + "\n", encoding="utf-8")
        except OSError as error:
            raise fail(CharlstmError(f"cannot write {output}: {error.strerror}")) from None


def _documents(model, count: int, options: dict, settings: SampleSettings, as_jsonl: bool):
    """Documents drawn, and on stderr what was drawn: repeats, and how many were
    training, held-out and new documents (when the training corpus is at hand)."""
    options = {k: v for k, v in options.items() if k not in ("num_samples", "stop")}
    made = model.sample_documents(
        count, unique=settings.unique, novel=settings.novel, label=settings.label, **options
    )
    tally = model.last_tally
    if not tally.told:
        err.print(f"{tally.drawn:,} document(s) drawn, {tally.repeats:,} repeat(s) (the "
                  "training corpus is not here to tell new ones)", markup=False)  # fmt: skip
    else:
        err.print(tally.line(), markup=False)
    if len(made) < count:
        err.print(f"only {len(made):,} of {count:,} documents met --unique/--novel", markup=False)
    return made


def _write_documents(made: list, as_jsonl: bool, output: Path | None) -> None:
    if as_jsonl:
        lines = [json.dumps(m.to_dict(), ensure_ascii=False) for m in made]
    else:  # documents of several lines are kept apart by a blank line
        gap = "\n\n" if any("\n" in m.text for m in made) else "\n"
        lines = [gap.join(m.text for m in made)] if made else []
    text = "\n".join(lines) + ("\n" if lines else "")
    write_out(text)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as error:
            raise fail(CharlstmError(f"cannot write {output}: {error.strerror}")) from None


@app.command("eval")
def evaluate(
    checkpoint: CheckpointOpt = None,
    text: Annotated[Path | None, typer.Option("--text", help="A file to score.")] = None,
    split: Annotated[
        str | None,
        typer.Option("--split", help="'val': the training corpus's validation split."),
    ] = None,
    streams: Annotated[int, _opt(Score, "streams", "--streams")] = Score.streams,
    window: Annotated[int, _opt(Score, "window", "--window")] = Score.window,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object and nothing else.")
    ] = False,
    documents: Annotated[
        Path | None,
        typer.Option(
            "--documents",
            help="Document models: score each line of this file (or each record of a "
            ".jsonl file: text, label) as a document of its own.",
        ),
    ] = None,
    as_jsonl: Annotated[
        bool, typer.Option("--jsonl", help="With --documents: one JSON object per document.")
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="cpu, cuda, cuda:N, mps or auto.")
    ] = "cpu",
    task: Annotated[
        str | None, typer.Option("--task", help="Exact-match score on a synthetic task instead.")
    ] = None,
    n_min: Annotated[int, _opt(Task, "n_min", "--n-min")] = Task.n_min,
    n_max: Annotated[int, _opt(Task, "n_max", "--n-max")] = Task.n_max,
    count: Annotated[int, _opt(Task, "count", "--count")] = Task.count,
    seed: Annotated[int, _opt(Task, "seed", "--seed")] = Task.seed,
    ablate: Annotated[
        str | None,
        typer.Option("--ablate", help="LAYER:UNIT[,...]: hold these units' h and c at 0."),
    ] = None,
) -> None:
    """Loss, bits per character and perplexity of a checkpoint on a text (or, with
    --task, its exact-match accuracy on fresh examples of a synthetic language)."""
    from charlstm.api import load
    from charlstm.device import pick_device
    from charlstm.evaluate import check_eval_options, score_task
    from charlstm.inspect.ablation import parse_units
    from charlstm.data.tasks import check_task_options

    if documents is not None:
        _score_documents(checkpoint, documents, as_jsonl, device)
        return
    try:
        if as_jsonl:
            raise CharlstmError("--jsonl scores documents: give --documents FILE")
        if task is not None:
            check_task_options(task, count, n_min, n_max)
        else:
            check_eval_options(text, split, streams, window)
        units = parse_units(ablate) if ablate is not None else []
        model = load(checkpoint, pick_device(device))
        silenced = model.ablated(units) if units else None
        with StopRequests():
            if task is not None:
                score = score_task(model.net, model.vocab, task, count, seed, n_min, n_max)
                if silenced is not None:
                    ablated_score = score_task(
                        silenced.net, model.vocab, task, count, seed, n_min, n_max
                    )
            else:
                result = model.evaluate(
                    text, split, streams, window, show_progress=True, console=err
                )
                if silenced is not None:
                    ablated_result = silenced.evaluate(text, split, streams, window)
                per_label = {}
                if split is not None and model.vocab.labels:
                    per_label = model.evaluate_documents()[1]
    except CharlstmError as error:
        raise fail(error) from None
    shown_units = [[layer, unit] for layer, unit in units]
    if task is not None:
        numbers = score.to_dict()
        if silenced is not None:
            numbers.update(ablated_accuracy=ablated_score.accuracy, ablated_units=shown_units)
        if as_json:
            sys.stdout.write(json.dumps(numbers) + "\n")
            return
        out.print(f"{task}: {score.accuracy:.1%} exact ({score.correct}/{score.total})")
        for n, (c, t) in sorted(score.per_n.items()):
            out.print(f"  N={n:>3}: {c / t:6.1%} ({c}/{t})")
        if silenced is not None:
            out.print(f"with {ablate} ablated: {ablated_score.accuracy:.1%} exact")
        return
    numbers = {
        "loss": result.loss,
        "bpc": result.bpc,
        "perplexity": result.perplexity,
        "chars": result.chars,
        "chars_per_sec": result.chars_per_sec,
    }
    if silenced is not None:
        numbers.update(ablated_loss=ablated_result.loss, ablated_units=shown_units)
    if per_label:
        numbers["loss_per_label"] = per_label
    if as_json:
        sys.stdout.write(json.dumps(numbers) + "\n")
        return
    out.print(
        f"loss {result.loss:.4f} nats/char  bpc {result.bpc:.4f}  "
        f"perplexity {result.perplexity:.3f}\n"
        f"{result.chars:,} characters scored at {result.chars_per_sec:,.0f} chars/s"
    )
    if silenced is not None:
        change = ablated_result.loss - result.loss
        out.print(
            f"with {ablate} ablated: loss {ablated_result.loss:.4f} nats/char "
            f"({change:+.4f}), bpc {ablated_result.bpc:.4f}"
        )
    if result.unknown:
        out.print(f"{result.unknown:,} characters outside the vocabulary were left out")
    for name, loss in per_label.items():
        out.print(f"  label {name}: loss {loss:.4f} nats/char", markup=False)


def _score_documents(checkpoint, path: Path, as_jsonl: bool, device: str) -> None:
    """`charlstm eval --documents FILE`: each document scored from the document start."""
    from charlstm.api import load
    from charlstm.device import pick_device
    from charlstm.data.split import read_documents

    try:
        model = load(checkpoint, pick_device(device))
        if not model.vocab.documents:
            raise CharlstmError(
                "--documents scores documents, and this model was not trained on them "
                "(data.documents): use --text FILE"
            )
        docs = read_documents(path, model.config.data)
        for label in sorted({label for label, _ in docs if label is not None}):
            model.vocab.label_id(label)  # an unknown label: one line before any work
        with StopRequests():
            scores = []
            for label in dict.fromkeys(label for label, _ in docs):
                texts = [t for lab, t in docs if lab == label]
                scores += list(zip([i for i, (lab, _) in enumerate(docs) if lab == label],
                                   model.score_documents(texts, label), strict=True))  # fmt: skip
    except CharlstmError as error:
        raise fail(error) from None
    scores = [score for _, score in sorted(scores, key=lambda pair: pair[0])]
    if as_jsonl:
        write_out("".join(json.dumps(s.to_dict(), ensure_ascii=False) + "\n" for s in scores))
        return
    total = -sum(s.log_prob for s in scores)
    predictions = sum(s.chars + 1 for s in scores)
    loss = total / max(predictions, 1)
    out.print(
        f"{len(scores):,} documents: loss {loss:.4f} nats/char  bpc {loss / math.log(2):.4f} "
        f"({predictions:,} predictions, each end included)"
    )


tasks_app = typer.Typer(help="Synthetic languages from the exploring-LSTMs experiments.")
app.add_typer(tasks_app, name="tasks")


@tasks_app.command("generate")
def tasks_generate(
    name: Annotated[str, typer.Argument(help="counter, selective-counter, state or copy.")],
    out_file: Annotated[Path, typer.Option("--out", help="File to write, one example per line.")],
    count: Annotated[int, typer.Option("--count", help="Examples.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same examples.")] = 0,
    n_min: Annotated[int, typer.Option("--n-min", help="Smallest N.")] = Task.n_min,
    n_max: Annotated[int, typer.Option("--n-max", help="Largest N.")] = Task.n_max,
) -> None:
    """Write examples of a synthetic task (train on them with data.path: task:NAME)."""
    from charlstm.data.tasks import check_task_options, corpus_text

    try:
        check_task_options(name, count, n_min, n_max)
        check_out_file(out_file, "--out")
        text = corpus_text(name, count, seed, n_min, n_max)
        out_file.write_text(text, encoding="utf-8")
    except CharlstmError as error:
        raise fail(error) from None
    except OSError as error:
        raise fail(CharlstmError(f"cannot write {out_file}: {error.strerror}")) from None
    out.print(f"wrote {count} {name} examples to {out_file}")


@app.command()
def inspect(
    out_file: Annotated[
        Path, typer.Option("--out", help="Where to write the report (.html, .npz or .json).")
    ],
    checkpoint: CheckpointOpt = None,
    text_file: Annotated[
        Path | None, typer.Option("--text", help="A file to run through the model.")
    ] = None,
    prime: Annotated[str | None, typer.Option("--prime", help="Or a text given here.")] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option("--feature", help="name=REGEX: characters inside a match count as 1."),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="html, npz or json (default: from --out's suffix)."),
    ] = None,
    max_chars: Annotated[int, _opt(Look, "max_chars", "--max-chars")] = Look.max_chars,
    top: Annotated[int, _opt(Look, "top", "--top")] = Look.top,
    unknown: Annotated[
        str,
        typer.Option("--unknown", help="Characters outside the vocabulary: error or skip."),
    ] = "error",
    language: Annotated[
        str | None,
        typer.Option(
            "--language",
            help="For strings and comments: python, c, cpp, java, javascript, go or rust "
            "(default: from --text's extension, else python).",
        ),
    ] = None,
    find: Annotated[
        str | None,
        typer.Option("--find", help="List the spans where the units on across TEXT are on."),
    ] = None,
) -> None:
    """Record h, c and the gates of every LSTM unit on a text, rank the units that follow
    features of it (strings, brackets, indentation, ...) and write a report."""
    from charlstm.api import load
    from charlstm.evaluate import read_text_file
    from charlstm.inspect.features import language_of
    from charlstm.inspect.pipeline import check_inspect_options, report_format

    try:
        if (text_file is None) == (prime is None):
            raise CharlstmError("inspect needs exactly one of --text FILE and --prime TEXT")
        check_inspect_options(feature or [], top, unknown, find, max_chars)
        check_out_file(out_file, "--out")
        chosen = report_format(out_file, fmt)
        lang = language_of(text_file, language)
        text = (read_text_file(text_file) if text_file is not None else prime)[:max_chars]
        model = load(checkpoint, "cpu")
        with StopRequests():
            seen = model.inspect(
                text,
                features=feature or [],
                language=lang,
                top=top,
                unknown=unknown,
                find=find,
                title=text_file.name if text_file else "prime",
                show_progress=True,
                console=err,
            )
        seen.write(out_file, chosen)
    except CharlstmError as error:
        raise fail(error) from None
    acts, ranking, effects, found = seen.acts, seen.ranking, seen.effects, seen.found
    out.print(
        f"wrote {out_file}: {len(acts.chars):,} characters, {acts.shape[1]} layer(s) x "
        f"{acts.shape[2]} units"
    )
    for name, ranked in ranking.items():
        if ranked:
            c = ranked[0]
            change = (
                f", ablated: {effects[name].mean_change:+.4f} nats/char" if name in effects else ""
            )
            out.print(
                f"  {name}: {c.quantity} layer {c.layer} unit {c.unit} (r = {c.r:+.2f}{change})",
                markup=False,
            )
    if found is not None:
        units = ", ".join(f"{layer}:{unit}" for layer, unit in found.units)
        out.print(f"more like {find!r} (units {units}):", markup=False)
        for match in found.matches[:10]:
            context = f"{match.before}[{match.text}]{match.after}"
            out.print(f"  {match.score:.2f} at {match.start}: {context!r}", markup=False)


@app.command()
def export(
    out_file: Annotated[Path, typer.Option("--out", help="The page to write (.html).")],
    checkpoint: CheckpointOpt = None,
    precision: Annotated[
        str,
        typer.Option(
            "--precision", help="fp16 (half the size) or fp32 (exactly sample's numbers)."
        ),
    ] = "fp16",
    title: Annotated[str, typer.Option("--title", help="The page's title.")] = "",
    form: Annotated[
        str,
        typer.Option(
            "--format", help="html (a page that writes in the browser) or onnx (a step model)."
        ),
    ] = "html",
) -> None:
    """Write the model as one self-contained web page that generates text in the browser,
    or (--format onnx) as an ONNX step model for onnxruntime."""
    from charlstm.api import load
    from charlstm.export.page import check_precision, export_page

    try:
        if form not in ("html", "onnx"):
            raise CharlstmError(f"--format must be html or onnx (got {form!r})")
        check_precision(precision)
        check_out_file(out_file, "--out")
        if form == "onnx":
            from charlstm.export.onnx import export_onnx

            size = export_onnx(load(checkpoint, "cpu"), out_file)
            out.print(f"wrote {out_file}: {size / 1e6:.2f} MB, an ONNX step model (opset 17)")
            return
        exported = export_page(load(checkpoint, "cpu"), out_file, precision, title)
    except CharlstmError as error:
        raise fail(error) from None
    out.print(
        f"wrote {exported.path}: {exported.bytes / 1e6:.2f} MB, {exported.parameters:,} "
        f"parameters ({precision}); open it in a browser, or add "
        "#prime=...&length=300&autorun=1 to its address"
    )


Serve = ServeSettings()


@app.command()
def serve(
    checkpoint: CheckpointOpt = None,
    host: Annotated[str, _opt(Serve, "host", "--host")] = Serve.host,
    port: Annotated[int, _opt(Serve, "port", "--port")] = Serve.port,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="CHARLSTM_API_KEY", help=help_of(ServeSettings, "api_key")
        ),
    ] = Serve.api_key,
    cors: Annotated[str | None, _opt(Serve, "cors", "--cors")] = Serve.cors,
    max_streams: Annotated[int, _opt(Serve, "max_streams", "--max-streams")] = Serve.max_streams,
    max_chars: Annotated[int, _opt(Serve, "max_chars", "--max-chars")] = Serve.max_chars,
    max_jobs: Annotated[int, _opt(Serve, "max_jobs", "--max-jobs")] = Serve.max_jobs,
    interval_ms: Annotated[float, _opt(Serve, "interval_ms", "--interval-ms")] = Serve.interval_ms,
    watch: Annotated[bool, _opt(Serve, "watch", "--watch")] = Serve.watch,
    drain_s: Annotated[float, _opt(Serve, "drain_s", "--drain-s")] = Serve.drain_s,
    device: Annotated[str, _opt(Serve, "device", "--device")] = Serve.device,
    threads: Annotated[int, _opt(Serve, "threads", "--threads")] = Serve.threads,
) -> None:
    """Serve a model over HTTP: OpenAI's /v1/completions (streaming too), /v1/models,
    and /sample, /score, /info, /health; concurrent requests share each recurrent step."""
    try:
        settings = ServeSettings(host=host, port=port, api_key=api_key, cors=cors,
                                 max_streams=max_streams, max_chars=max_chars, max_jobs=max_jobs,
                                 interval_ms=interval_ms, watch=watch, drain_s=drain_s,
                                 device=device,
                                 threads=threads)  # fmt: skip
        try:
            import fastapi  # noqa: F401
            import uvicorn  # noqa: F401
        except ImportError:
            raise CharlstmError(
                "charlstm serve needs its extra: pip install 'charlstm[serve]'"
            ) from None
        from charlstm.api import load
        from charlstm.checkpoint import resolve_checkpoint
        from charlstm.device import pick_device

        model = load(checkpoint, pick_device(device))
        path = resolve_checkpoint(Path(checkpoint) if checkpoint is not None else None)
    except CharlstmError as error:
        raise fail(error) from None
    from charlstm.serve.server import serve as run_server

    run_server(model, settings, path, err)


@app.command()
def info(checkpoint: CheckpointOpt = None) -> None:
    """What a checkpoint holds: config, vocabulary, size, step, best validation loss."""
    import yaml

    from charlstm.api import load

    try:
        model = load(checkpoint, "cpu")
    except CharlstmError as error:
        raise fail(error) from None
    best = model.best_val_loss
    out.print(
        yaml.safe_dump(model.config.to_dict(), sort_keys=False, allow_unicode=True).rstrip(),
        markup=False,
    )
    out.print(
        f"vocabulary: {model.vocab.size} ({model.vocab.mode})\n"
        f"parameters: {model.net.num_parameters():,}\nstep: {model.step}\nbest val loss: "
        + (f"{best:.4f} ({best / math.log(2):.4f} bpc)" if math.isfinite(best) else "none yet")
    )


def main() -> None:
    """Console entry point: parser errors become one line and exit code 1 too."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err.print("error: aborted", markup=False)
        sys.exit(130)
    except Exception as error:  # the parser's UsageError family (click's, or Typer's copy)
        format_message = getattr(error, "format_message", None)
        if format_message is None:
            raise
        if type(error).__name__ == "NoArgsIsHelpError":  # a bare `charlstm`: help was shown
            sys.exit(0)
        err.print(f"error: {format_message()}", markup=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
