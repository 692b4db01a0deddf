"""What the commands accept beside the config, each option with its one default and its
one help text: the command line reads them from here (`default_of`, `help_of`), the API
takes its keyword defaults from the same fields, and the settings objects check their
values where they are built, so a mistake is one line before any work.

Nothing here imports torch: `charlstm --help` stays quick.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charlstm.errors import CharlstmError, SettingsError, check_types

# The sizes N of synthetic task examples (charlstm.data.tasks), unless asked otherwise.
TASK_N_MIN, TASK_N_MAX = 1, 10


# What a device option accepts (train.device, --device): one parser, one help.
DEVICE_NAME = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
DEVICE_HELP = "auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps"
# The one default rule: training takes the fastest device here; a command that runs a
# trained model (sample, eval, serve, charlstm.load) takes the CPU unless told, since a
# checkpoint from any machine loads there and a stream of one-character steps needs no
# GPU. inspect, export and info read weights and activations into host memory: always
# the CPU.
TRAIN_DEVICE, RUN_DEVICE = "auto", "cpu"


def is_device_name(name: str) -> bool:
    return DEVICE_NAME.fullmatch(name) is not None


def check_device(name: str, option: str) -> str:
    """A device name, checked before any work starts; `option` is how the user gave it
    (`--device`, `train.device`), for the message."""
    if not is_device_name(name):
        raise CharlstmError(f"{option} must be {DEVICE_NAMES} (got {name!r})")
    return name


# Seeds are whole numbers in 0..MAX_SEED everywhere (torch's generators take no more); a
# seed moved on by an index (a choice of a completion, a round of documents) wraps
# around inside that range.
MAX_SEED = 2**63 - 1


def seed_checks(seed: int | None, option: str) -> tuple[bool, str]:
    return (
        seed is None or 0 <= seed <= MAX_SEED,
        f"{option} must be a whole number in 0..{MAX_SEED} (got {seed})",
    )


def seed32(seed: int) -> int:
    """A seed for generators that take 32 bits (numpy's global one, Optuna's samplers)."""
    return seed % 2**32


def derived_seed(seed: int | None, index: int) -> int | None:
    """The seed of the index-th of several draws that share one seed."""
    return None if seed is None else (seed + index) % (MAX_SEED + 1)


DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")
MAX_DURATION_S = 366 * 24 * 3600.0


def parse_duration(text: str, option: str) -> float:
    """Seconds in `90s`, `10m`, `1h`, `1h30m` or a plain number of seconds."""
    match = DURATION.fullmatch(text.strip().lower())
    if not text.strip() or match is None or not any(match.groups()):
        raise SettingsError(f"{option}: {text!r} is not a duration: write 90s, 10m, 1h or 1h30m")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if not 0 < total <= MAX_DURATION_S:
        raise SettingsError(f"{option} must be more than 0 s and at most a year (got {text!r})")
    return total


def option(default: Any, help: str) -> Any:
    """A settings field: its default and the help text every interface shows for it."""
    return field(default=default, metadata={"help": help})


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")  # a charlstm bug


def default_of(cls: type, name: str) -> Any:
    return _field(cls, name).default


def help_of(cls: type, name: str) -> str:
    return _field(cls, name).metadata["help"]


def _check(checks: list[tuple[bool, str]]) -> None:
    """Each (holds, message) rule; the first that fails is a SettingsError (its message
    names fields as `field`)."""
    for ok, message in checks:
        if not ok:
            raise SettingsError(message)


# What to do with a prime's (or a text's) characters outside the vocabulary.
UNKNOWN_CHOICES = ("error", "skip")


def _bias_pairs(bias) -> tuple[tuple[int, float], ...]:
    """A logit bias as (id, bias) pairs, from pairs, a mapping (a JSON object's keys are
    strings of digits) or ID=BIAS strings (the command line's)."""
    pairs = bias.items() if isinstance(bias, dict) else bias or ()
    pairs = [pair.split("=", 1) if isinstance(pair, str) else pair for pair in pairs]  # ID=BIAS
    try:
        return tuple(sorted((int(k), float(v)) for k, v in pairs))
    except (TypeError, ValueError):
        raise SettingsError(
            f"`logit_bias` maps character ids (whole numbers) to biases (got {bias!r:.80})"
        ) from None


def _clamp_triples(clamps) -> tuple[tuple[int, int, float], ...]:
    """Clamps as (layer, unit, value) triples, from triples or L:U=VALUE strings (the
    command line's), each checked: whole layer and unit >= 0, a value in -100..100."""
    triples = []
    for clamp in clamps or ():
        found = (
            re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*=\s*(\S+)\s*", clamp)
            if isinstance(clamp, str)
            else None
        )
        try:
            layer, unit, value = found.groups() if found else clamp
            triple = (int(layer), int(unit), float(value))
        except (TypeError, ValueError):
            raise SettingsError(f"`clamp` takes LAYER:UNIT=VALUE (got {clamp!r:.80})") from None
        if triple[0] < 0 or triple[1] < 0 or not -100 <= triple[2] <= 100:
            raise SettingsError(f"`clamp` {clamp!r:.80}: layer and unit >= 0, a value in -100..100")
        triples.append(triple)
    return tuple(triples)


def logit_bias_checks(bias: tuple[tuple[int, float], ...]) -> tuple[bool, str]:
    """Ids >= 0 and biases in -100..100 (which ids a model has: generate/repetition.py)."""
    bad = next((pair for pair in bias if pair[0] < 0 or not -100 <= pair[1] <= 100), None)
    return bad is None, f"`logit_bias`: an id >= 0 and a bias in -100..100 each (got {bad})"


def unknown_checks(unknown: str) -> tuple[bool, str]:
    return unknown in UNKNOWN_CHOICES, f"`unknown` must be error or skip (got {unknown!r})"


# One sample's characters, and all of one call's: a run of days on a CPU, gigabytes of
# text; past them a typo (10**12) would grow memory until the process is killed.
MAX_LENGTH = 10_000_000
MAX_CHARS_ASKED = 100_000_000


@dataclass(frozen=True)
class SampleSettings:
    """How to generate (charlstm sample, Model.generate and the calls built on it, the
    server's requests, the training log's samples)."""

    prime: str = option("", "Text to start from; the output begins with it.")
    length: int = option(500, "Characters to generate.")
    # 0.8: a little more conservative than the model's own distribution, char-rnn's
    # long-standing choice for readable samples.
    temperature: float = option(0.8, "> 0; lower is more conservative.")
    top_k: int | None = option(None, "Sample among the k likeliest characters.")
    top_p: float | None = option(
        None, "Sample among the likeliest characters holding p of the mass."
    )
    greedy: bool = option(False, "Always take the likeliest character.")
    seed: int | None = option(None, "Same seed, same text.")
    num_samples: int = option(1, "Samples generated together as one batch.")
    stop: str | None = option(None, "End a sample where this string appears.")
    unknown: str = option("error", "Prime characters outside the vocabulary: error or skip.")
    beam: int | None = option(
        None, "Beam search with this many beams: the likeliest text found (1 = greedy)."
    )
    best_of: int | None = option(None, "Draw this many samples, keep the likeliest.")
    documents: int | None = option(
        None, "Document models: write this many whole documents, one per line."
    )
    unique: bool = option(False, "Documents: drop repeats.")
    novel: bool = option(False, "Documents: drop those found verbatim in the training corpus.")
    label: str | None = option(None, "Labelled document models: generate for this label.")
    regex: str | None = option(
        None, "Each sample (each document) is a full match of this pattern (. matches a newline)."
    )
    contains: tuple[str, ...] = option((), "Each sample contains this text (repeatable).")
    ends_with: str | None = option(None, "Each sample ends with this text.")
    allow: str | None = option(None, "Generate only these characters.")
    ban: str | None = option(None, "Never generate these characters.")
    min_length: int | None = option(
        None, "At least this many characters generated (documents: before their end)."
    )
    max_length: int | None = option(
        None, "At most this many characters generated (a constrained text may end sooner)."
    )

    @property
    def chars_asked(self) -> int:
        """The most characters these settings can make: what a server caps."""
        return self.length * max(self.num_samples, self.documents or 1, self.best_of or 1)

    repetition_penalty: float | None = option(
        None, "Divide the odds of characters seen in the window by this (CTRL's rule; > 1)."
    )
    # 64: about a line of code or prose, the span of most attractor loops.
    repetition_window: int = option(64, "The last characters the penalty looks at.")
    no_repeat_ngram: int | None = option(
        None,
        "No character n-gram twice in one sample (0 = off; a beam of 2 or more: 16 unless given).",
    )
    # OpenAI's penalties: a character's logit is lowered by frequency_penalty for each
    # time it was generated so far, and by presence_penalty once it was.
    frequency_penalty: float = option(
        0.0, "Lower a character's logit this much per time it was generated (-2..2)."
    )
    presence_penalty: float = option(
        0.0, "Lower the logit of every character generated so far this much (-2..2)."
    )
    # (layer, unit, value) triples (generate/clamp.py)
    clamp: tuple[tuple[int, int, float], ...] = option(
        (), "L:U=VALUE: hold unit U of layer L at VALUE at every step (repeatable; its h)."
    )
    # (id, bias) pairs, OpenAI's logit_bias over the model's character ids
    logit_bias: tuple[tuple[int, float], ...] = option(
        (), "Add this to a character id's logit at every draw (-100..100; -100 bans it)."
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "contains", tuple(self.contains or ()))  # a parser's list
        object.__setattr__(self, "logit_bias", _bias_pairs(self.logit_bias))
        object.__setattr__(self, "clamp", _clamp_triples(self.clamp))
        check_types(self)
        _check(
            [
                (
                    self.min_length is None or self.min_length >= 0,
                    f"`min_length` must be >= 0 (got {self.min_length})",
                ),
                (
                    self.max_length is None or self.max_length >= 1,
                    f"`max_length` must be >= 1 (got {self.max_length})",
                ),
                (
                    self.min_length is None
                    or self.min_length <= min(self.length, self.max_length or self.length),
                    "`min_length` is more than `length` / `max_length` allow",
                ),
                (all(self.contains), "`contains` must not be empty"),
                (
                    self.repetition_penalty is None or 1.0 <= self.repetition_penalty <= 100.0,
                    f"`repetition_penalty` must be in 1..100 (got {self.repetition_penalty})",
                ),
                (
                    1 <= self.repetition_window <= 100_000,
                    f"`repetition_window` must be in 1..100000 (got {self.repetition_window})",
                ),
                (
                    self.no_repeat_ngram is None or 0 <= self.no_repeat_ngram <= 1000,
                    f"`no_repeat_ngram` must be in 0..1000 (got {self.no_repeat_ngram})",
                ),
                (
                    -2.0 <= self.frequency_penalty <= 2.0,
                    f"`frequency_penalty` must be in -2..2 (got {self.frequency_penalty})",
                ),
                (
                    -2.0 <= self.presence_penalty <= 2.0,
                    f"`presence_penalty` must be in -2..2 (got {self.presence_penalty})",
                ),
                logit_bias_checks(self.logit_bias),
                (self.ends_with is None or self.ends_with != "", "`ends_with` must not be empty"),
                (self.allow is None or self.allow != "", "`allow` must not be empty"),
                seed_checks(self.seed, "`seed`"),
                (
                    0 <= self.length <= MAX_LENGTH,
                    f"`length` must be in 0..{MAX_LENGTH:,} (got {self.length:,})",
                ),
                (
                    self.chars_asked <= MAX_CHARS_ASKED,
                    f"at most {MAX_CHARS_ASKED:,} characters in all (`length` times "
                    f"`num_samples`, `documents` or `best_of`; got {self.chars_asked:,})",
                ),
                (self.temperature > 0, f"`temperature` must be > 0 (got {self.temperature})"),
                (
                    self.top_k is None or self.top_k >= 1,
                    f"`top_k` must be >= 1 (got {self.top_k})",
                ),
                (
                    self.top_p is None or 0 < self.top_p <= 1,
                    f"`top_p` must be in (0, 1] (got {self.top_p})",
                ),
                (self.num_samples >= 1, f"`num_samples` must be >= 1 (got {self.num_samples})"),
                unknown_checks(self.unknown),
                (self.stop is None or self.stop != "", "`stop` must not be empty"),
                (self.beam is None or self.beam >= 1, f"`beam` must be >= 1 (got {self.beam})"),
                (
                    self.best_of is None or self.best_of >= 1,
                    f"`best_of` must be >= 1 (got {self.best_of})",
                ),
                (
                    self.beam is None or self.best_of is None,
                    "`beam` and `best_of` are two searches: give one of them",
                ),
                (
                    (self.beam is None and self.best_of is None) or self.num_samples == 1,
                    "`beam` and `best_of` return one text: leave `num_samples` at 1",
                ),
                (
                    self.documents is None or self.documents >= 1,
                    f"`documents` must be >= 1 (got {self.documents})",
                ),
                (
                    self.documents is None or (self.beam is None and self.best_of is None),
                    "`beam` and `best_of` return one document: leave out `documents`",
                ),
                (
                    self.documents is None or (self.num_samples == 1 and self.stop is None),
                    "`documents` N counts the documents and each ends at its end token: leave "
                    "out `num_samples` and `stop`",
                ),
                (
                    self.documents is not None or not (self.unique or self.novel),
                    "`unique` and `novel` choose among documents: give `documents` N",
                ),
            ]
        )


@dataclass(frozen=True)
class SuggestSettings:
    """How many of what could come next `charlstm suggest` (Model.next_chars and
    next_words, the server's /suggest) lists."""

    chars: int = option(10, "The likeliest next characters to list, with their odds.")
    words: int = option(5, "The likeliest next words to list (a document model: completions).")

    def __post_init__(self) -> None:
        check_types(self)
        _check(
            [
                (0 <= self.chars <= 1000, f"`chars` must be in 0..1000 (got {self.chars})"),
                (0 <= self.words <= 100, f"`words` must be in 0..100 (got {self.words})"),
                (self.chars or self.words, "give `chars` N or `words` N (or both)"),
            ]
        )


@dataclass(frozen=True)
class ScoreSettings:
    """How a text is walked when it is scored (charlstm eval, Model.score/evaluate,
    validation during training)."""

    # 16 streams keep a CPU's cores busy; each burns in on the text before it, so the
    # number is within 1e-4 nats of the single pass (bench/RESULTS.md).
    streams: int = option(16, "Parallel streams (1 = one exact pass).")
    window: int = option(512, "Characters per forward pass (memory bound only).")

    def __post_init__(self) -> None:
        check_types(self)
        _check(
            [
                (self.streams >= 1, f"`streams` must be >= 1 (got {self.streams})"),
                (self.window >= 1, f"`window` must be >= 1 (got {self.window})"),
            ]
        )


@dataclass(frozen=True)
class TaskExamples:
    """Which examples of a synthetic task are scored (charlstm eval --task)."""

    count: int = option(200, "Task examples to score.")
    # Not a training seed (configs train on task_seed 0): the scored examples are new.
    seed: int = option(1_000_003, "Task examples' seed (not the training one).")
    n_min: int = option(TASK_N_MIN, "Task examples: smallest N.")
    n_max: int = option(TASK_N_MAX, "Task examples: largest N.")

    def __post_init__(self) -> None:
        check_types(self)
        _check([seed_checks(self.seed, "`seed`")])


@dataclass(frozen=True)
class TaskCorpus:
    """What `charlstm tasks generate` writes (the sizes N as TaskExamples')."""

    count: int = option(1000, "Examples to write, one per line.")
    seed: int = option(0, "Same seed, same examples.")

    def __post_init__(self) -> None:
        check_types(self)
        _check([seed_checks(self.seed, "`seed`")])


@dataclass(frozen=True)
class InspectSettings:
    """How much of a text `charlstm inspect` reads and how many units it lists."""

    max_chars: int = option(4000, "Read at most this many characters.")
    top: int = option(8, "Units listed per feature.")
    unknown: str = option("error", "Characters outside the vocabulary: error or skip.")

    def __post_init__(self) -> None:
        check_types(self)
        _check(
            [
                (self.max_chars >= 1 and self.top >= 1, "`max_chars` and `top` must be >= 1"),
                unknown_checks(self.unknown),
            ]
        )


# The states of every character read are held: 200,000 characters of a 2x256 LSTM (h
# and c) are 819 MB, 2.1 GB at the peak of a probe (bench/RESULTS.md 12).
MAX_PROBE_CHARS = 200_000


@dataclass(frozen=True)
class ProbeSettings:
    """What `charlstm probe` reads and fits (charlstm/inspect/probe.py)."""

    # 40,000 characters: 30,000 to fit (8,000 of them read by the fit), 10,000 held out;
    # a 2x256 LSTM's states for them are 160 MB
    max_chars: int = option(40_000, "Read at most this many characters (the first ones).")
    top: int = option(8, "Units listed per feature.")
    seed: int = option(0, "Seed of the fit's sampling and of the shuffled control.")
    unknown: str = option("skip", "Characters outside the vocabulary: error or skip.")

    def __post_init__(self) -> None:
        check_types(self)
        _check(
            [
                (
                    100 <= self.max_chars <= MAX_PROBE_CHARS,
                    f"`max_chars` must be in 100..{MAX_PROBE_CHARS} (got {self.max_chars})",
                ),
                (1 <= self.top <= 1000, f"`top` must be in 1..1000 (got {self.top})"),
                seed_checks(self.seed, "`seed`"),
                unknown_checks(self.unknown),
            ]
        )


TUNE_PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class TuneSettings:
    """What `charlstm tune` runs: an Optuna study of time-budget trials around a base
    config (charlstm.training.tune)."""

    config: Path | None = option(None, "The base config (YAML).")
    overrides: tuple[str, ...] = option((), "Override: section.key=value (repeatable).")
    time: str = option("30m", "This process's time: 30m, 2h.")
    trial_time: str = option("2m", "Each trial's training budget: 2m, 180s.")
    space: Path | None = option(None, "YAML: key: [choices] or key: {low, high, log}.")
    storage: str | None = option(
        None,
        "A database URL shared by many processes (postgresql://...); default: a journal "
        "file in the study folder.",
    )
    study: str | None = option(None, "Its name (default: tune-CONFIG).")
    out: Path | None = option(None, "The study folder.")
    trials: int | None = option(None, "At most this many here.")
    pruner: str = option("median", "median, hyperband or none.")
    seed: int | None = option(None, "The sampler's seed.")
    start: str = option(
        "auto",
        "auto: the first trial is what train.auto chooses for a trial's budget (for the keys "
        "the config leaves open), the default space around it; base: the config as it is.",
    )

    @property
    def seconds(self) -> float:
        """The whole study's time in this process."""
        return parse_duration(self.time, "`time`")

    @property
    def trial_seconds(self) -> float:
        return parse_duration(self.trial_time, "`trial_time`")

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides or ()))  # a parser's list
        check_types(self)
        seconds, trial = self.seconds, self.trial_seconds
        _check(
            [
                (
                    trial <= seconds,
                    f"`trial_time` ({trial:g} s) is longer than `time` ({seconds:g} s): no "
                    "trial would fit",
                ),
                (
                    self.trials is None or self.trials >= 1,
                    f"`trials` must be >= 1 (got {self.trials})",
                ),
                (
                    self.pruner in TUNE_PRUNERS,
                    f"`pruner` must be median, hyperband or none (got {self.pruner!r})",
                ),
                (
                    self.start in ("auto", "base"),
                    f"`start` must be auto or base (got {self.start!r})",
                ),
                seed_checks(self.seed, "`seed`"),
            ]
        )


EXPORT_FORMATS = ("html", "onnx", "safetensors")
PAGE_PRECISIONS = ("fp16", "fp32")


@dataclass(frozen=True)
class ExportSettings:
    """What `charlstm export` writes (charlstm.export)."""

    format: str = option(
        "html",
        "html (a page that writes in the browser), onnx (a step model) or safetensors (a "
        "folder: model.safetensors and config.json).",
    )
    precision: str = option("fp16", "fp16 (half the size) or fp32 (exactly sample's numbers).")
    title: str = option("", "The page's title.")

    def __post_init__(self) -> None:
        check_types(self)
        _check(
            [
                (
                    self.format in EXPORT_FORMATS,
                    f"`format` must be html, onnx or safetensors (got {self.format!r})",
                ),
                (
                    self.precision in PAGE_PRECISIONS,
                    f"`precision` must be fp16 or fp32 (got {self.precision!r})",
                ),
            ]
        )


@dataclass(frozen=True)
class ServeSettings:
    """How `charlstm serve` listens and what it allows."""

    host: str = option("127.0.0.1", "Address to bind (loopback by default).")
    port: int = option(8000, "Port to listen on.")
    api_key: str | None = option(
        None,
        "Required on every request (Authorization: Bearer KEY); needed to bind any "
        "address but loopback.",
    )
    cors: str | None = option(None, "Allow browser requests from this origin.")
    allow_host: tuple[str, ...] = option(
        (),
        "Also answer requests naming this Host (repeatable; * for any). Loopback names and "
        "--host are always answered; any other name is refused (DNS rebinding).",
    )
    model_name: tuple[str, ...] = option(
        (),
        "Also answer to this model name (repeatable): a client that sends its own model "
        "name gets this model; any other name is 404, as OpenAI answers.",
    )
    show_prompt: bool = option(False, "Log the text each chat request's messages became.")
    # 256 rows of a 2x256 LSTM step in about 4 ms on a 2-core CPU; more waiting streams
    # would only make every reader slower, so the 257th is told to come back.
    max_streams: int = option(256, "Streams generated at once; more get 503.")
    max_chars: int = option(4000, "Characters one request may ask for.")
    # 10 s: a client on any network sends a request head in well under a second.
    read_timeout_s: float = option(
        10.0, "A connection that sends no whole request head in this long is closed."
    )
    # Connections and requests in flight at once (uvicorn's limit): past it, 503.
    max_connections: int = option(1000, "Connections at once; more get 503.")
    # 8 MB: the longest prompt allowed (64 x --max-chars) with every character escaped
    # in JSON is a fraction of it; a larger body is refused before it is read.
    max_body_mb: float = option(8.0, "Largest request body, in MB; a larger one gets 413.")
    max_jobs: int = option(
        2, "/sample and /score requests at once (each holds a core); more get 503."
    )
    # 20 ms: finer than a reader can see; at 64 streams handing over every character
    # cost the event loop more than the model's step (bench/RESULTS.md 8).
    interval_ms: float = option(
        20.0, "A stream's text is sent at most this often (0: every character)."
    )
    watch: bool = option(False, "Reload when the checkpoint file changes (serve while training).")
    drain_s: float = option(
        10.0,
        "After SIGTERM or Ctrl-C, streams in flight may finish for this long; then each "
        "ends where it is (finish_reason abort).",
    )
    device: str = option(RUN_DEVICE, DEVICE_HELP + ".")
    # The event loop and the clients need a core of their own: on 2 cores a step on one
    # thread served 64 clients 1.6x faster than on two (bench/RESULTS.md 8).
    threads: int = option(0, "CPU threads for the model's step (0: all cores but one).")

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_host", tuple(self.allow_host or ()))  # a parser's list
        object.__setattr__(self, "model_name", tuple(self.model_name or ()))
        _check(
            [
                (
                    self.loopback or bool(self.api_key),
                    f"--host {self.host} is reachable from other machines: give --api-key KEY "
                    "(or set CHARLSTM_API_KEY), or bind 127.0.0.1",
                ),
                (0 < self.port < 65536, f"--port must be in 1..65535 (got {self.port})"),
                (self.max_streams >= 1, f"--max-streams must be >= 1 (got {self.max_streams})"),
                (
                    1 <= self.max_chars <= MAX_LENGTH,
                    f"--max-chars must be in 1..{MAX_LENGTH:,} (got {self.max_chars:,})",
                ),
                (self.max_jobs >= 1, f"--max-jobs must be >= 1 (got {self.max_jobs})"),
                (
                    0 < self.read_timeout_s <= 3600,
                    f"--read-timeout-s must be in (0, 3600] (got {self.read_timeout_s})",
                ),
                (
                    self.max_connections >= 1,
                    f"--max-connections must be >= 1 (got {self.max_connections})",
                ),
                (
                    0 < self.max_body_mb <= 1024,
                    f"--max-body-mb must be in (0, 1024] (got {self.max_body_mb})",
                ),
                (self.threads >= 0, f"--threads must be >= 0 (got {self.threads})"),
                (0 <= self.drain_s <= 3600, f"--drain-s must be in 0..3600 (got {self.drain_s})"),
                (
                    0 <= self.interval_ms <= 1000,
                    f"--interval-ms must be in 0..1000 (got {self.interval_ms})",
                ),
            ]
        )

    @property
    def allowed_hosts(self) -> frozenset[str]:
        named = {self.host} if self.host not in ("0.0.0.0", "::") else set()
        return frozenset({"localhost", "127.0.0.1", "::1", *named, *self.allow_host})

    @property
    def step_threads(self) -> int:
        import os

        return self.threads or max(1, (os.cpu_count() or 1) - 1)

    @property
    def loopback(self) -> bool:
        import ipaddress

        try:
            return self.host == "localhost" or ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False
