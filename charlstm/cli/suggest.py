"""`charlstm suggest`: the likeliest next characters and words after a prime, with the
model's own odds (charlstm/generate/suggest.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from charlstm.cli.common import (
    DEFAULT_DEVICE,
    CheckpointOpt,
    DeviceOpt,
    PrimeFileOpt,
    json_line,
    load_model,
    option_of,
    out,
    read_prime,
    settings_from,
    write_out,
)
from charlstm.cli.sample import ClampOpt, LabelOpt, PrimeOpt, UnknownOpt
from charlstm.interrupt import StopRequests
from charlstm.options import SampleSettings, SuggestSettings

S, Ask = SampleSettings(), SuggestSettings()

CharsOpt = Annotated[int, option_of(SuggestSettings, "chars", "--chars")]
WordsOpt = Annotated[int, option_of(SuggestSettings, "words", "--words")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object: chars, words.")]


def suggest(
    checkpoint: CheckpointOpt = None,
    prime: PrimeOpt = S.prime,
    prime_file: PrimeFileOpt = None,
    chars: CharsOpt = Ask.chars,
    words: WordsOpt = Ask.words,
    unknown: UnknownOpt = S.unknown,
    label: LabelOpt = S.label,
    clamp: ClampOpt = None,
    as_json: JsonOpt = False,
    device: DeviceOpt = DEFAULT_DEVICE,
) -> None:
    """The likeliest next characters and words after a prime, with their odds."""
    prime = read_prime(prime, prime_file)
    asked = settings_from(SuggestSettings, locals())
    settings = SampleSettings(prime=prime, unknown=unknown, label=label, clamp=clamp)
    model = load_model(checkpoint, device)
    with StopRequests():
        found = model.suggest(settings, asked)
    if as_json:
        shown = {kind: [s.to_dict() for s in found[kind]] for kind in found}
        write_out(json_line(shown))
        return
    completions = "completions" if model.vocab.documents else "words"
    for kind, title in (("chars", "characters"), ("words", completions)):
        if found[kind]:
            out.print(f"next {title} after {prime!r}:", markup=False)
        for s in found[kind]:
            out.print(f"  {s.prob:7.2%}  " + ("(end)" if s.ends and not s.text else repr(s.text)),
                      markup=False)  # fmt: skip
