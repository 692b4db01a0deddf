"""`charlstm inspect`: record every unit on a text, rank the units that follow its
features, write a report (see charlstm/inspect/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import CheckpointOpt, check_out_file, err, load_model, option_of, out
from charlstm.errors import CharlstmError
from charlstm.interrupt import StopRequests
from charlstm.options import InspectSettings

Look = InspectSettings()

OutOpt = Annotated[
    Path, typer.Option("--out", help="Where to write the report (.html, .npz or .json).")
]
TextOpt = Annotated[Path | None, typer.Option("--text", help="A file to run through the model.")]
PrimeOpt = Annotated[str | None, typer.Option("--prime", help="Or a text given here.")]
FeatureOpt = Annotated[
    list[str] | None,
    typer.Option("--feature", help="name=REGEX: characters inside a match count as 1."),
]
FormatOpt = Annotated[
    str | None, typer.Option("--format", help="html, npz or json (default: from --out's suffix).")
]
MaxCharsOpt = Annotated[int, option_of(InspectSettings, "max_chars", "--max-chars")]
TopOpt = Annotated[int, option_of(InspectSettings, "top", "--top")]
UnknownOpt = Annotated[str, option_of(InspectSettings, "unknown", "--unknown")]
LanguageOpt = Annotated[
    str | None,
    typer.Option(
        "--language",
        help="For strings and comments: python, c, cpp, java, javascript, go or rust "
        "(default: from --text's extension, else python).",
    ),
]
FindOpt = Annotated[
    str | None,
    typer.Option("--find", help="List the spans where the units on across TEXT are on."),
]


def inspect(
    out_file: OutOpt,
    checkpoint: CheckpointOpt = None,
    text_file: TextOpt = None,
    prime: PrimeOpt = None,
    feature: FeatureOpt = None,
    fmt: FormatOpt = None,
    max_chars: MaxCharsOpt = Look.max_chars,
    top: TopOpt = Look.top,
    unknown: UnknownOpt = Look.unknown,
    language: LanguageOpt = None,
    find: FindOpt = None,
    reach: Annotated[
        bool,
        typer.Option(
            "--reach",
            help="Also measure how far back the model remembers (loss "
            "against context length, gradient against distance).",
        ),
    ] = False,
) -> None:
    """Look inside: which units follow which features of a text, in a report.

    Records every unit's output and its cell's own quantities (an LSTM's c and gates, a
    GRU's gates) on the text, ranks the units that follow its features (strings,
    brackets, indentation, ...) and writes the report."""
    from charlstm.data.corpus import read_text_file
    from charlstm.inspect.features import language_of
    from charlstm.inspect.pipeline import check_inspect_options, report_format

    if (text_file is None) == (prime is None):
        raise CharlstmError("inspect needs exactly one of --text FILE and --prime TEXT")
    check_inspect_options(feature or [], top, unknown, find, max_chars)
    check_out_file(out_file, "--out")
    chosen = report_format(out_file, fmt)
    lang = language_of(text_file, language)
    text = (read_text_file(text_file) if text_file is not None else prime)[:max_chars]
    model = load_model(checkpoint)
    with StopRequests():
        seen = model.inspect(
            text, features=feature or [], language=lang, top=top, unknown=unknown,
            find=find, title=text_file.name if text_file else "prime", reach=reach,
            show_progress=True, console=err,
        )  # fmt: skip
    seen.write(out_file, chosen)
    _summary(out_file, seen, find)


def _summary(out_file: Path, seen, find: str | None) -> None:
    acts, effects = seen.acts, seen.effects
    out.print(
        f"wrote {out_file}: {len(acts.chars):,} characters, {acts.shape[1]} layer(s) x "
        f"{acts.shape[2]} units"
    )
    for name, ranked in seen.ranking.items():
        if ranked:
            c = ranked[0]
            change = (
                f", ablated: {effects[name].mean_change:+.4f} nats/char" if name in effects else ""
            )
            out.print(
                f"  {name}: {c.quantity} layer {c.layer} unit {c.unit} (r = {c.r:+.2f}{change})",
                markup=False,
            )
    if seen.reach is not None:
        r = seen.reach
        losses = "  ".join(f"{k}: {v:.3f}" for k, v in zip(r.distances, r.loss, strict=True))
        out.print(f"reach at {r.positions} positions, loss reading the last k characters: "
                  f"{losses}; with the whole state: {r.full_loss:.3f}", markup=False)  # fmt: skip
    if seen.found is not None:
        units = ", ".join(f"{layer}:{unit}" for layer, unit in seen.found.units)
        out.print(f"more like {find!r} (units {units}):", markup=False)
        for match in seen.found.matches[:10]:
            context = f"{match.before}[{match.text}]{match.after}"
            out.print(f"  {match.score:.2f} at {match.start}: {context!r}", markup=False)
