"""`charlstm inspect` as one call: record a text's activations, rank the units that follow
its features, measure what the top unit of each feature is worth, find spans like a
query, and write the report. The command line and `Model.inspect` are both this.

    >>> import charlstm
    >>> from charlstm.inspect import inspect_text
    >>> seen = inspect_text(charlstm.load("runs/python-code"), open("a.py").read())
    >>> seen.ranking["indentation"][0]          # the unit that counts indentation best
    >>> seen.write(Path("report.html"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from charlstm.checkpoint import Trained
from charlstm.errors import CharlstmError
from charlstm.inspect.ablation import Ablation, unit_effects
from charlstm.inspect.activations import Activations, Correlated, rank_units, record
from charlstm.inspect.features import builtin_features, check_language, parse_feature
from charlstm.inspect.match import Found, find_like
from charlstm.inspect.reach import Reach
from charlstm.inspect.reach import reach as measure_reach
from charlstm.inspect.report import REPORT_FORMATS, write_report
from charlstm.options import InspectSettings, default_of


@dataclass(frozen=True)
class Inspection:
    """What one text showed of a model: every unit's values, the text's features, the
    units ranked per feature, the loss change when each feature's top unit is ablated,
    and (with `find`) the spans like the query."""

    acts: Activations
    features: dict[str, np.ndarray]
    ranking: dict[str, list[Correlated]]
    effects: dict[str, Ablation]
    found: Found | None
    title: str
    reach: Reach | None = None  # with reach=True: how far back the model remembers

    def write(self, path: str | Path, fmt: str | None = None) -> None:
        """The report as html, npz or json (default: from the file's suffix)."""
        path = Path(path)
        chosen = report_format(path, fmt)
        write_report(
            path, self.acts, self.features, self.ranking, chosen, self.title, self.effects,
            self.found, self.reach,
        )  # fmt: skip


def report_format(path: Path, fmt: str | None) -> str:
    chosen = fmt or path.suffix.lstrip(".") or "html"
    if chosen not in REPORT_FORMATS:
        raise CharlstmError(f"--format must be {', '.join(REPORT_FORMATS)} (got {chosen!r})")
    return chosen


def check_inspect_options(
    features: list[str], top: int, unknown: str, find: str | None, max_chars: int = 1
) -> InspectSettings:
    """Every option, checked before any work; the settings they make."""
    look = InspectSettings(max_chars=max_chars, top=top, unknown=unknown)
    for spec in features:
        parse_feature(spec, "")  # a bad name=REGEX fails now, not after the run
    if find is not None and not find:
        raise CharlstmError("--find needs a text to look for")
    return look


def inspect_text(
    model: Trained,
    text: str,
    *,
    features: list[str] = (),
    language: str = "python",
    top: int = default_of(InspectSettings, "top"),
    unknown: str = default_of(InspectSettings, "unknown"),
    find: str | None = None,
    title: str = "text",
    reach: bool = False,
    show_progress: bool = False,
    console: Console | None = None,
) -> Inspection:
    """Run `text` through `model` and look at every LSTM unit on the way.

    features: extra "name=REGEX" features (characters inside a match count as 1),
        beside the built-in strings, comments, brackets, indentation and positions.
    language: how strings and comments are read (python, c, cpp, java, javascript, go,
        rust).
    top: units kept per feature.
    unknown: characters outside the vocabulary: "error" or "skip".
    find: list the spans where the units on across this text are on.
    title: the report's name for the text.
    reach: measure how far back the model remembers (inspect/reach.py).
    """
    features = list(features)
    look = check_inspect_options(features, top, unknown, find)
    check_language(language)
    acts = record(
        model.net, model.vocab, text, unknown=look.unknown, show_progress=show_progress,
        console=console,
    )  # fmt: skip
    shown = "".join(acts.chars)  # the text as the model read it (skips dropped)
    found_features = builtin_features(shown, language)
    found_features.update(parse_feature(spec, shown) for spec in features)
    ranking = rank_units(acts, found_features, look.top)
    ids = model.vocab.encode(text, unknown=look.unknown)
    tops = {name: (r[0].layer, r[0].unit) for name, r in ranking.items() if r}
    effects = unit_effects(model.net, ids, tops)
    found = find_like(acts, find) if find is not None else None
    m = model.config.model
    full_title = f"{title}, {m.num_layers}x{m.hidden_size} {m.cell}"
    remembered = measure_reach(model.net, ids) if reach else None
    return Inspection(acts, found_features, ranking, effects, found, full_title, remembered)
