"""`charlstm probe`: which units carry a property of a text (charlstm/inspect/probe.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import (
    DEFAULT_DEVICE,
    CheckpointOpt,
    DeviceOpt,
    check_out_file,
    err,
    load_model,
    option_of,
    out,
    settings_from,
)
from charlstm.errors import CharlstmError
from charlstm.interrupt import StopRequests
from charlstm.options import ProbeSettings

P = ProbeSettings()

FeatureOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--feature",
        help="A built-in feature of inspect (string literal, comment, bracket depth, "
        "indentation, after newline), or NAME=REGEX (inside a match); repeatable.",
    ),
]


def probe(
    feature: FeatureOpt = None,
    text_file: Annotated[Path | None, typer.Option("--text", help="A file to read.")] = None,
    documents: Annotated[
        Path | None,
        typer.Option(
            "--documents",
            help="Or a .jsonl or .csv file of documents (a text "
            "column and a label column): a probe per label, read at each end.",
        ),
    ] = None,
    label_column: Annotated[
        str, typer.Option("--label-column", help="The documents' label column.")
    ] = "label",
    checkpoint: CheckpointOpt = None,
    max_chars: Annotated[int, option_of(ProbeSettings, "max_chars", "--max-chars")] = P.max_chars,
    top: Annotated[int, option_of(ProbeSettings, "top", "--top")] = P.top,
    seed: Annotated[int, option_of(ProbeSettings, "seed", "--seed")] = P.seed,
    unknown: Annotated[str, option_of(ProbeSettings, "unknown", "--unknown")] = P.unknown,
    language: Annotated[
        str | None, typer.Option("--language", help="Its language (default: from the suffix).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON list.")] = False,
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write a report (.html): the held-out text coloured "
            "by each probe and by its best unit.",
        ),
    ] = None,
    device: DeviceOpt = DEFAULT_DEVICE,
) -> None:
    """Find the units that carry a property of the text: a sparse probe per feature.

    Fits an L1 logistic regression from every layer's states to the feature on the
    first three quarters of the text, scores it on the last, beside two controls; or,
    with --documents, from the states at each document's end to its label."""
    settings = settings_from(ProbeSettings, locals())
    _check_options(text_file, documents, feature, out_file)
    if documents is not None:
        _probe_documents(checkpoint, device, documents, label_column, settings, as_json)
        return
    from charlstm.inspect.probe import probe_features

    model = load_model(checkpoint, device)
    ids, shown, features = _read_text(model, text_file, feature, language, settings)
    with StopRequests():
        found = probe_features(model.net, ids, features, settings.seed, settings.top,
                               show_progress=True, console=err)  # fmt: skip
    if out_file is not None:
        _write_page(out_file, shown, found, text_file.name)
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in found]) + "\n")
        return
    for r in found:
        _show(r)


def _check_options(text_file, documents, feature, out_file) -> None:
    if (text_file is None) == (documents is None):
        raise CharlstmError("probe needs exactly one of --text FILE (with --feature) and "
                            "--documents FILE")  # fmt: skip
    if documents is not None and (feature or out_file is not None):
        raise CharlstmError("--documents probes each label: leave out --feature and --out")
    if text_file is not None and not feature:
        raise CharlstmError("--text needs at least one --feature")
    if text_file is not None and not text_file.is_file():
        raise CharlstmError(f"--text {text_file}: no such file")
    if out_file is not None:
        check_out_file(out_file, "--out")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise CharlstmError(
            "charlstm probe needs its extra: pip install 'charlstm[inspect]'"
        ) from None


def _read_text(model, text_file: Path, feature: list[str], language, settings):
    """The ids the model reads, that text, and each feature's value per character."""
    from charlstm.data.corpus import read_text_file
    from charlstm.inspect.features import builtin_features, language_of, parse_feature

    text = read_text_file(text_file)[: settings.max_chars]
    ids = model.vocab.encode(text, unknown=settings.unknown)
    shown = model.vocab.decode(ids.tolist())  # what the model reads, a feature per id
    if model.vocab.mode == "byte" or len(shown) != len(ids):
        raise CharlstmError("probe reads character models (this one reads bytes)")
    builtin = builtin_features(shown, language_of(text_file, language))
    features = {}
    for spec in feature:
        if spec in builtin:
            features[spec] = builtin[spec]
        elif "=" in spec:
            name, values = parse_feature(spec, shown)
            features[name] = values
        else:
            known = ", ".join(builtin)
            raise CharlstmError(f"--feature {spec!r}: give NAME=REGEX or one of: {known}")
    return ids, shown, features


def _write_page(out_file: Path, shown: str, found, title: str) -> None:
    from charlstm.inspect.probe import probe_page

    try:
        out_file.write_text(probe_page(list(shown), found, title), encoding="utf-8")
    except OSError as error:
        raise CharlstmError(f"cannot write {out_file}: {error.strerror}") from None
    err.print(f"wrote {out_file}", markup=False)


def _probe_documents(checkpoint, device, path: Path, column: str, settings, as_json) -> None:
    from charlstm.inspect.probe import probe_documents, read_labelled

    found = read_labelled(path, column, settings.max_chars)
    model = load_model(checkpoint, device)
    with StopRequests():
        results = probe_documents(model.net, model.vocab, found, settings.unknown,
                                  settings.seed, settings.top)  # fmt: skip
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in results]) + "\n")
        return
    for r in results:
        _show(r, "documents")


def _show(r, of: str = "characters") -> None:
    b = r.best_unit
    out.print(
        f"{r.feature}: {r.positives:.1%} of {r.chars:,} {of}; held out the last quarter\n"
        f"  probe               AUC {r.probe.auc:.3f}  accuracy {r.probe.accuracy:.3f}  "
        f"{r.probe.units} units\n"
        f"  best single unit    AUC {b['auc']:.3f}  ({b['quantity']} layer {b['layer']} unit "
        f"{b['unit']}, {'higher' if b['sign'] > 0 else 'lower'} inside)\n"
        f"  control: embedding  AUC {r.embedding.auc:.3f}  ({r.embedding.units} inputs)\n"
        f"  control: shuffled   AUC {r.shuffled.auc:.3f}",
        markup=False,
    )
    for u in r.top:
        out.print(f"    {u['quantity']} layer {u['layer']} unit {u['unit']:<5} "
                  f"weight {u['weight']:+.3f}", markup=False)  # fmt: skip
