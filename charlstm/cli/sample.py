"""`charlstm sample`: parse the options into SampleSettings, call Model.generate, print
what it made (plain samples stream as they are generated)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charlstm.cli.common import (
    DEFAULT_DEVICE,
    AblateOpt,
    CheckpointOpt,
    DeviceOpt,
    PrimeFileOpt,
    check_out_file,
    err,
    json_line,
    load_model,
    option_of,
    read_prime,
    settings_from,
    write_file,
    write_out,
)
from charlstm.errors import CharlstmError
from charlstm.interrupt import StopRequests
from charlstm.options import SampleSettings

S = SampleSettings()
SEPARATOR = "\n" + "-" * 40 + "\n"  # between samples of --num-samples

# Each option of SampleSettings, its help the field's own.
PrimeOpt = Annotated[str, option_of(SampleSettings, "prime", "--prime", "-p")]
LengthOpt = Annotated[int, option_of(SampleSettings, "length", "--length", "-n")]
TemperatureOpt = Annotated[float, option_of(SampleSettings, "temperature", "--temperature", "-t")]
TopKOpt = Annotated[int | None, option_of(SampleSettings, "top_k", "--top-k")]
TopPOpt = Annotated[float | None, option_of(SampleSettings, "top_p", "--top-p")]
GreedyOpt = Annotated[bool, option_of(SampleSettings, "greedy", "--greedy")]
SeedOpt = Annotated[int | None, option_of(SampleSettings, "seed", "--seed")]
NumSamplesOpt = Annotated[int, option_of(SampleSettings, "num_samples", "--num-samples")]
StopOpt = Annotated[str | None, option_of(SampleSettings, "stop", "--stop")]
UnknownOpt = Annotated[str, option_of(SampleSettings, "unknown", "--unknown")]
BeamOpt = Annotated[int | None, option_of(SampleSettings, "beam", "--beam")]
BestOfOpt = Annotated[int | None, option_of(SampleSettings, "best_of", "--best-of")]
DocumentsOpt = Annotated[int | None, option_of(SampleSettings, "documents", "--documents")]
UniqueOpt = Annotated[bool, option_of(SampleSettings, "unique", "--unique")]
NovelOpt = Annotated[bool, option_of(SampleSettings, "novel", "--novel")]
LabelOpt = Annotated[str | None, option_of(SampleSettings, "label", "--label")]
RegexOpt = Annotated[str | None, option_of(SampleSettings, "regex", "--regex")]
ContainsOpt = Annotated[list[str] | None, option_of(SampleSettings, "contains", "--contains")]
EndsWithOpt = Annotated[str | None, option_of(SampleSettings, "ends_with", "--ends-with")]
AllowOpt = Annotated[str | None, option_of(SampleSettings, "allow", "--allow")]
BanOpt = Annotated[str | None, option_of(SampleSettings, "ban", "--ban")]
MinLengthOpt = Annotated[int | None, option_of(SampleSettings, "min_length", "--min-length")]
MaxLengthOpt = Annotated[int | None, option_of(SampleSettings, "max_length", "--max-length")]
PenaltyOpt = Annotated[
    float | None, option_of(SampleSettings, "repetition_penalty", "--repetition-penalty")
]
WindowOpt = Annotated[int, option_of(SampleSettings, "repetition_window", "--repetition-window")]
NgramOpt = Annotated[int | None, option_of(SampleSettings, "no_repeat_ngram", "--no-repeat-ngram")]
FrequencyOpt = Annotated[
    float, option_of(SampleSettings, "frequency_penalty", "--frequency-penalty")
]
PresenceOpt = Annotated[float, option_of(SampleSettings, "presence_penalty", "--presence-penalty")]
ClampOpt = Annotated[
    list[str] | None, option_of(SampleSettings, "clamp", "--clamp", metavar="L:U=VALUE")
]
BiasOpt = Annotated[
    list[str] | None, option_of(SampleSettings, "logit_bias", "--logit-bias", metavar="ID=BIAS")
]
JsonlOpt = Annotated[
    bool,
    typer.Option("--jsonl", help="Documents: one JSON object each (text, log_prob, bpc, chars)."),
]
OutputOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Also write the samples to this file.")
]


def sample(
    checkpoint: CheckpointOpt = None,
    prime: PrimeOpt = S.prime,
    prime_file: PrimeFileOpt = None,
    length: LengthOpt = S.length,
    temperature: TemperatureOpt = S.temperature,
    top_k: TopKOpt = S.top_k,
    top_p: TopPOpt = S.top_p,
    greedy: GreedyOpt = S.greedy,
    seed: SeedOpt = S.seed,
    num_samples: NumSamplesOpt = S.num_samples,
    stop: StopOpt = S.stop,
    unknown: UnknownOpt = S.unknown,
    beam: BeamOpt = S.beam,
    best_of: BestOfOpt = S.best_of,
    documents: DocumentsOpt = S.documents,
    unique: UniqueOpt = S.unique,
    novel: NovelOpt = S.novel,
    label: LabelOpt = S.label,
    regex: RegexOpt = S.regex,
    contains: ContainsOpt = None,
    ends_with: EndsWithOpt = S.ends_with,
    allow: AllowOpt = S.allow,
    ban: BanOpt = S.ban,
    min_length: MinLengthOpt = S.min_length,
    max_length: MaxLengthOpt = S.max_length,
    repetition_penalty: PenaltyOpt = S.repetition_penalty,
    repetition_window: WindowOpt = S.repetition_window,
    no_repeat_ngram: NgramOpt = S.no_repeat_ngram,
    frequency_penalty: FrequencyOpt = S.frequency_penalty,
    presence_penalty: PresenceOpt = S.presence_penalty,
    logit_bias: BiasOpt = None,
    clamp: ClampOpt = None,
    as_jsonl: JsonlOpt = False,
    output: OutputOpt = None,
    device: DeviceOpt = DEFAULT_DEVICE,
    ablate: AblateOpt = None,
) -> None:
    """Generate text from a checkpoint, streaming it as it is generated."""
    prime = read_prime(prime, prime_file)
    settings = settings_from(SampleSettings, locals())
    if as_jsonl and documents is None:
        raise CharlstmError("--jsonl writes documents: give --documents N")
    check_out_file(output, "--output")
    made, streamed = _generate(checkpoint, device, ablate, settings)
    text = _show(made, streamed, as_jsonl)
    if output is not None:
        write_file(output, text)


def _generate(checkpoint, device: str, ablate: str | None, settings: SampleSettings):
    """The model's Generation, and whether it was streamed to stdout as it was drawn
    (one plain sample)."""
    from charlstm.generate.run import plan

    model = load_model(checkpoint, device, ablate)
    streamed = plan(model.vocab, settings).streams  # what does not apply: one line first
    with StopRequests():
        on_text = (lambda _, piece: write_out(piece)) if streamed else None
        return model.generate(settings, on_text=on_text), streamed


def _show(made, streamed: bool, as_jsonl: bool) -> str:
    """Print what was made (a streamed sample has been printed already, all but its
    line end); return the text for --output."""
    if made.mode == "documents":
        _tell_documents(made)
        text = _documents_text(made.samples, as_jsonl)
        write_out(text)
    elif made.mode == "search":
        found = made.samples[0]
        text = found.text + "\n"
        write_out(text)
        err.print(f"log-probability {found.log_prob:.3f} nats over {found.chars} characters, "
                  f"{found.bpc:.3f} bits per character", markup=False)  # fmt: skip
    else:
        text = SEPARATOR.join(made.texts) + "\n"
        write_out("\n" if streamed else text)
    return text


def _tell_documents(made) -> None:
    """On stderr, what was drawn: repeats, and how many were training, held-out and new
    documents (when the training corpus is at hand)."""
    tally = made.tally
    if not tally.told:
        err.print(f"{tally.drawn:,} document(s) drawn, {tally.repeats:,} repeat(s) (the "
                  "training corpus is not here to tell new ones)", markup=False)  # fmt: skip
    else:
        err.print(tally.line(), markup=False)
    if len(made.samples) < made.asked:
        err.print(f"only {len(made.samples):,} of {made.asked:,} documents met --unique/--novel",
                  markup=False)  # fmt: skip


def _documents_text(made: list, as_jsonl: bool) -> str:
    if as_jsonl:
        lines = [json_line(m.to_dict())[:-1] for m in made]
    else:  # documents of several lines are kept apart by a blank line
        gap = "\n\n" if any("\n" in m.text for m in made) else "\n"
        lines = [gap.join(m.text for m in made)] if made else []
    return "\n".join(lines) + ("\n" if lines else "")
