"""Configuration: YAML file -> dotted `--set` overrides -> frozen dataclasses, validated once.

Each section owns its defaults (with a comment on why) and its range checks, so a
`Config` that exists is a config that is safe to train with. Unknown keys are errors
that suggest the closest valid key; values are typed by the dataclass field.
"""

from __future__ import annotations

import codecs
import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from charlstm.errors import ConfigError
from charlstm.options import (
    DEVICE_HELP,
    DEVICE_NAMES,
    MAX_SEED,
    TASK_N_MAX,
    TASK_N_MIN,
    TRAIN_DEVICE,
    SampleSettings,
    ScoreSettings,
    default_of,
    is_device_name,
    option,
)


def _require(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"config: {key} must be {rule} (got {value!r})")


@dataclass(frozen=True)
class DataConfig:
    path: str = option(
        "python-stdlib",
        "a text file, a directory (read recursively, sorted), `python-stdlib` (this "
        "interpreter's own .py sources: a code corpus on every machine), or `task:NAME`",
    )
    include: tuple[str, ...] = option(
        (), 'globs a directory\'s files must match, by name or relative path (`["*.py"]`)'
    )
    exclude: tuple[str, ...] = option(
        (), 'globs of files and folders to leave out, by name or relative path (`["docs/*"]`)'
    )
    respect_ignore: bool = option(
        True, "honour the `.gitignore` and `.ignore` files of a directory, as git does"
    )
    field: str | None = option(
        None,
        "JSON Lines / CSV / TSV / Parquet: the column holding the text; null = `text` "
        "(each record is a document; records are joined by a newline)",
    )
    encoding: str = option(
        "utf-8", "the text's encoding: any codec Python knows (`latin-1`, `gbk`, `utf-16`, ...)"
    )
    newlines: Literal["keep", "lf"] = option(
        "keep", "`keep` line ends as they are; `lf` turns CRLF and lone CR into LF"
    )
    vocab: Literal["char", "byte"] = option(
        "char", "`char`: one id per code point seen; `byte`: 256 ids, reads any file"
    )
    # Contiguous, never shuffled: a shuffled split of overlapping text leaks.
    val_fraction: float = option(
        0.05,
        "the last fraction of the text is the validation split (of documents: that share "
        "of them, drawn at random)",
    )
    documents: Literal["lines", "paragraphs", "files", "records"] | None = option(
        None,
        "split the corpus into documents, each ended by a reserved end id: `lines`, "
        "`paragraphs` (blank-line separated), `files` (each file or archive member), "
        "`records` (each record of JSON Lines / CSV / Parquet); null = one long text",
    )
    # Fresh: every document from the state sampling starts in (measured: bench/RESULTS.md 7).
    document_state: Literal["fresh", "carried"] = option(
        "fresh",
        "documents: `fresh` trains each from the document-start state; `carried` reads them "
        "as one stream, the state carried across",
    )
    val_max_documents: int | None = option(
        None, "documents: at most this many held out (makemore holds out 10%, at most 1,000)"
    )
    label_separator: str | None = option(
        None,
        "documents: each starts with a label and this separator (`label<TAB>text` lines: "
        '`"\\t"`); the label becomes a control id, `sample --label` picks it',
    )
    label_field: str | None = option(
        None, "documents of records: the column holding each record's label"
    )
    cache_dir: str | None = option(
        None, "encoded-corpus cache; null = `$XDG_CACHE_HOME/charlstm` or `~/.cache/charlstm`"
    )
    task_count: int = option(20000, "`task:NAME` corpora: example lines")
    task_seed: int = option(0, "`task:NAME` corpora: the seed they are drawn from")
    task_n_min: int = option(TASK_N_MIN, "`task:NAME` corpora: the smallest N")
    task_n_max: int = option(TASK_N_MAX, "`task:NAME` corpora: the largest N")

    def __post_init__(self) -> None:
        _require(0.0 < self.val_fraction < 1.0, "data.val_fraction", "in (0, 1)", self.val_fraction)
        _require(bool(self.path.strip()), "data.path", "a non-empty path", self.path)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ConfigError(
                f"config: data.encoding {self.encoding!r} is not an encoding Python knows "
                "(e.g. utf-8, latin-1, gbk, utf-16)"
            ) from None
        _require(self.field is None or bool(self.field), "data.field", "a column name", self.field)
        for key in ("label_separator", "label_field"):
            value = getattr(self, key)
            _require(value is None or bool(value), f"data.{key}", "non-empty", value)
            _require(
                value is None or self.documents is not None,
                f"data.{key}",
                "unset unless data.documents is set",
                value,
            )
        _require(
            self.label_field is None or self.documents == "records",
            "data.label_field",
            "used with data.documents=records",
            self.label_field,
        )
        _require(
            self.label_separator is None or self.label_field is None,
            "data.label_separator",
            "unset when data.label_field is set",
            self.label_separator,
        )
        _require(
            self.val_max_documents is None or self.val_max_documents >= 1,
            "data.val_max_documents",
            ">= 1",
            self.val_max_documents,
        )
        _require(self.task_count >= 1, "data.task_count", ">= 1", self.task_count)
        _require(0 <= self.task_seed <= MAX_SEED, "data.task_seed", f"in 0..{MAX_SEED}",
                 self.task_seed)  # fmt: skip
        _require(self.task_n_min >= 1, "data.task_n_min", ">= 1", self.task_n_min)
        _require(
            self.task_n_max >= self.task_n_min,
            "data.task_n_max",
            ">= data.task_n_min",
            self.task_n_max,
        )


@dataclass(frozen=True)
class ModelConfig:
    # LSTM is the default because it is what char-rnn made famous; gru/rnn for comparison.
    cell: Literal["lstm", "gru", "rnn", "peephole"] = option(
        "lstm",
        "`lstm`, `gru`, `rnn` (fused kernels) or `peephole` (an LSTM whose gates also see "
        "the cell state; TorchScript loop, slower)",
    )
    # Characters are few; a small embedding loses nothing against one-hot inputs.
    embedding_dim: int = option(64, "character embedding size")
    hidden_size: int = option(256, "units per recurrent layer")
    num_layers: int = option(2, "recurrent layers")
    # 0: small corpora and models underfit before they overfit.
    dropout: float = option(0.0, "between recurrent layers and before the decoder, in [0, 1)")
    tie_weights: bool = option(
        False, "share embedding and decoder weights (needs embedding_dim == hidden_size)"
    )

    def __post_init__(self) -> None:
        _require(self.embedding_dim > 0, "model.embedding_dim", "> 0", self.embedding_dim)
        _require(self.hidden_size > 0, "model.hidden_size", "> 0", self.hidden_size)
        _require(self.num_layers >= 1, "model.num_layers", ">= 1", self.num_layers)
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "in [0, 1)", self.dropout)
        if self.tie_weights and self.embedding_dim != self.hidden_size:
            raise ConfigError(
                "config: model.tie_weights needs model.embedding_dim == model.hidden_size "
                f"(got {self.embedding_dim} and {self.hidden_size})"
            )


@dataclass(frozen=True)
class TrainConfig:
    init_from: str | None = option(
        None,
        "fine-tune: start from this checkpoint's weights (a file, or a run folder: its "
        "best.pt, else last.pt) with a fresh optimizer, schedule and step count; the model "
        "settings come from it, the vocabulary grows by the corpus's new characters",
    )
    batch_size: int = option(32, "contiguous streams trained side by side")
    bptt: int = option(
        64, "characters per window (truncation length): gradients stop there, the state not"
    )
    max_steps: int | None = option(2000, "stop after this many steps (null = no limit)")
    max_seconds: float | None = option(
        None,
        "a time budget (null = none): without `decay_steps` the schedule fits it (see "
        '"What training does"); a deadline: no step starts after it, and the final '
        "validation stops at it",
    )
    # Adam-family rates near 2e-3 are the long-standing char-rnn sweet spot.
    lr: float = option(2e-3, "peak learning rate (AdamW)")
    # Linear warm-up avoids early blow-ups of the recurrent weights.
    warmup_steps: int = option(100, "linear warm-up steps")
    decay_steps: int | None = option(
        None,
        "cosine decay length; null = the steps `max_seconds` allows when it is set, else "
        "max_steps (a constant rate if both are null)",
    )
    # As nanoGPT does: the cosine ends above 0, so the last steps still learn.
    final_lr_fraction: float = option(0.1, "the cosine ends at lr × this")
    weight_decay: float = option(
        0.01, "AdamW weight decay, on the weight matrices only (not biases or peepholes)"
    )
    optimizer: Literal["adamw", "muon"] = option(
        "adamw",
        "`adamw` on every parameter; `muon`: Muon (orthogonalised momentum) on the "
        "recurrent and input-to-hidden matrices, AdamW on the rest, at the same rate",
    )
    # Clipping keeps exploding gradients in check.
    grad_clip: float = option(1.0, "gradient-norm clipping threshold; 0 = no clipping")
    # 0.995 averages over about the last 1 / (1 - 0.995) = 200 steps (fewer early on,
    # where the warm-up caps the decay at (1 + t) / (10 + t)).
    ema: float | None = option(
        None,
        "validate, save best.pt and sample with a moving average of the weights with this "
        "decay, in (0, 1) (null = off); training resumes from its own weights",
    )
    eval_every: int = option(250, "validate (and log a sample) every this many steps")
    # Each stream is warmed up on the text before it, so the number matches one in-order
    # pass closely and quickly.
    eval_streams: int = option(
        default_of(ScoreSettings, "streams"), "streams the validation split is walked as"
    )
    # The same stretch every time keeps the curve comparable, and a validation takes a
    # couple of seconds on a CPU even when the split is gigabytes.
    eval_chars: int | None = option(
        100_000,
        "characters each validation scores, always the same stretch at the start of the "
        "split (null = all; `charlstm eval --split val` always scores all)",
    )
    checkpoint_every: int = option(250, "save last.pt every this many steps")
    seed: int = option(1337, "seeds torch, numpy and Python")
    device: str = option(
        TRAIN_DEVICE, DEVICE_HELP + "; under torchrun each rank takes the GPU of its local rank"
    )
    out_dir: str = option("runs/default", "the run folder")
    threads: int | None = option(None, "CPU threads for PyTorch; null = PyTorch's choice")
    # fp32 is the default: it gives the same numbers on every machine. bf16 measured:
    # 1.25x the steps of the Shakespeare GRU recipe and 1.65x those of make demo's LSTM
    # on an AVX512-BF16 CPU; on an H100, cuDNN LSTMs were not faster than fp32 with TF32
    # (bench/RESULTS.md).
    precision: Literal["fp32", "bf16", "auto"] = option(
        "fp32",
        "`fp32` (TF32 tensor cores on CUDA), `bf16` (autocast: half the activation memory) "
        "or `auto` (bf16 on a CPU that computes in it natively, else fp32)",
    )
    # A blow-up is rare but costly: going back to the last good weights at a lower rate
    # saves the run, where skipping the update or stopping would not (training/guard.py).
    spike_factor: float = option(
        2.0,
        "a logged training loss above this x the recent loss (and half a nat above it), or "
        "a non-finite one, rolls back to the last good weights and halves the rate (0 = off)",
    )
    max_rollbacks: int = option(5, "after this many roll-backs the run stops, saying why")
    patience: int | None = option(
        None,
        "stop after this many validations in a row without a better one (best.pt holds "
        "the best); null = never (under train.auto: 3)",
    )
    keep_checkpoints: int = option(
        0,
        "also keep the last this many validations' checkpoints, named by step and "
        "validation loss (step-001250-val-1.4321.pt)",
    )
    auto: bool = option(
        False,
        "choose the model and schedule for this corpus, device and train.max_seconds "
        '(see "Autopilot"); the keys the config or --set give win',
    )

    def __post_init__(self) -> None:
        _require(self.batch_size >= 1, "train.batch_size", ">= 1", self.batch_size)
        _require(self.bptt >= 1, "train.bptt", ">= 1", self.bptt)
        for key in ("max_steps", "decay_steps", "threads", "eval_chars"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"train.{key}", ">= 1 or null", value)
        _require(
            self.max_seconds is None or self.max_seconds > 0,
            "train.max_seconds",
            "> 0 or null",
            self.max_seconds,
        )
        _require(self.lr > 0, "train.lr", "> 0", self.lr)
        _require(self.ema is None or 0 < self.ema < 1, "train.ema", "in (0, 1) or null", self.ema)
        _require(self.warmup_steps >= 0, "train.warmup_steps", ">= 0", self.warmup_steps)
        _require(
            0.0 <= self.final_lr_fraction <= 1.0,
            "train.final_lr_fraction",
            "in [0, 1]",
            self.final_lr_fraction,
        )
        _require(self.weight_decay >= 0, "train.weight_decay", ">= 0", self.weight_decay)
        _require(self.grad_clip >= 0, "train.grad_clip", ">= 0", self.grad_clip)
        _require(self.eval_every >= 1, "train.eval_every", ">= 1", self.eval_every)
        _require(self.eval_streams >= 1, "train.eval_streams", ">= 1", self.eval_streams)
        _require(
            self.checkpoint_every >= 1, "train.checkpoint_every", ">= 1", self.checkpoint_every
        )
        _require(
            self.spike_factor == 0 or self.spike_factor > 1,
            "train.spike_factor", "0 (off) or > 1", self.spike_factor,
        )  # fmt: skip
        _require(self.max_rollbacks >= 1, "train.max_rollbacks", ">= 1", self.max_rollbacks)
        _require(
            self.patience is None or self.patience >= 1, "train.patience", ">= 1 or null",
            self.patience,
        )  # fmt: skip
        _require(
            self.keep_checkpoints >= 0, "train.keep_checkpoints", ">= 0", self.keep_checkpoints
        )
        _require(0 <= self.seed <= MAX_SEED, "train.seed", f"in 0..{MAX_SEED}", self.seed)
        _require(
            is_device_name(self.device), "train.device", DEVICE_NAMES, self.device,
        )  # fmt: skip
        _require(bool(self.out_dir.strip()), "train.out_dir", "a non-empty path", self.out_dir)


@dataclass(frozen=True)
class LogConfig:
    # The only place training reads losses back from the device: a larger value means
    # fewer synchronisations.
    log_every: int = option(10, "steps between logged scalars and progress updates")
    sample_length: int = option(300, "characters of the TensorBoard sample at each validation")
    sample_temperature: float = option(default_of(SampleSettings, "temperature"), "its temperature")
    # The default fits any corpus; a prime given here must be text the corpus has.
    sample_prime: str | None = option(
        None, "its prime; null = a newline, or the corpus's first character if it has none"
    )

    def __post_init__(self) -> None:
        _require(self.log_every >= 1, "log.log_every", ">= 1", self.log_every)
        _require(self.sample_length >= 0, "log.sample_length", ">= 0", self.sample_length)
        _require(
            self.sample_temperature > 0,
            "log.sample_temperature",
            "> 0",
            self.sample_temperature,
        )


@dataclass(frozen=True)
class ServeConfig:
    # Jinja, sandboxed, as Hugging Face chat templates are (serve/chat.py has the default)
    chat_template: str | None = option(
        None,
        "template that writes chat messages as the model's text; null = the play format "
        "(NAME:, the line, a blank line)",
    )
    chat_end: str = option("\n\n", "where an answer's turn ends: its reply stops there")

    def __post_init__(self) -> None:
        _require(self.chat_end != "", "serve.chat_end", "a non-empty string", self.chat_end)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "log": LogConfig,
    "serve": ServeConfig,
}


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    # The `section.key`s the file and the overrides gave, which train.auto leaves as they
    # are; not part of the config itself (to_dict leaves it out).
    explicit: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain nested dict (lists, not tuples): YAML- and checkpoint-safe."""
        return {
            name: {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in vars(getattr(self, name)).items()
            }
            for name in SECTIONS
        }

    @classmethod
    def from_dict(cls, raw: Any, overrides: list[str] = ()) -> Config:
        """Build a validated Config from a nested mapping plus `section.key=value` strings."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                "config: the top level must be a mapping of sections "
                "(data, model, train, log, serve)"
            )
        merged: dict[str, dict[str, Any]] = {}
        for section, values in raw.items():
            if section not in SECTIONS:
                raise ConfigError(f"config: unknown section {section!r}{_suggest(str(section))}")
            if values is None:
                values = {}
            if not isinstance(values, dict):
                raise ConfigError(
                    f"config: section {section!r} must be a mapping of keys to values"
                )
            merged[section] = {}
            for key, value in values.items():
                _field_type(f"{section}.{key}")  # rejects unknown keys
                merged[section][key] = value
        for item in overrides:
            key, value = _parse_override(item)
            merged.setdefault(key.split(".")[0], {})[key.split(".")[1]] = value
        explicit = frozenset(f"{name}.{key}" for name, keys in merged.items() for key in keys)
        sections = {
            name: SECTIONS[name](
                **{
                    k: _coerce(v, _field_type(f"{name}.{k}"), f"{name}.{k}")
                    for k, v in merged.get(name, {}).items()
                }
            )
            for name in SECTIONS
        }
        return cls(**sections, explicit=explicit)

    def flat(self) -> dict[str, Any]:
        """`section.key` -> value, every key."""
        return {
            f"{name}.{k}": v for name, values in self.to_dict().items() for k, v in values.items()
        }

    def with_overrides(self, overrides: list[str]) -> Config:
        given = frozenset(_parse_override(item)[0] for item in overrides)
        cfg = Config.from_dict(self.to_dict(), overrides)
        return dataclasses.replace(cfg, explicit=self.explicit | given)

    def write_yaml(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


def load_config(path: Path | None, overrides: list[str] = ()) -> Config:
    """Read a YAML config file (or start from the defaults) and apply the overrides."""
    raw: Any = {}
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            where = ""
            mark = getattr(err, "problem_mark", None)
            if mark is not None:
                where = f" at line {mark.line + 1}, column {mark.column + 1}"
            problem = getattr(err, "problem", None) or "not valid YAML"
            raise ConfigError(f"invalid YAML in {path}{where}: {problem}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"config file {path} is not UTF-8 text") from None
    return Config.from_dict(raw, overrides)


def all_keys() -> list[str]:
    return [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _suggest(key: str) -> str:
    keys = all_keys()
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if not close:  # a bare or misplaced field name: match on the part after the dot
        by_name = {k.split(".")[1]: k for k in keys}
        names = difflib.get_close_matches(key.split(".")[-1], list(by_name), n=1, cutoff=0.6)
        close = [by_name[n] for n in names]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _field_type(key: str) -> Any:
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    hints = typing.get_type_hints(cls) if cls else {}
    if name not in hints:
        raise ConfigError(f"config: unknown key {key!r}{_suggest(key)}")
    return hints[name]


def _parse_override(item: str) -> tuple[str, Any]:
    key, eq, text = item.partition("=")
    key = key.strip()
    if not eq or key.count(".") != 1:
        raise ConfigError(
            f"override {item!r} must look like section.key=value (e.g. train.lr=1e-3)"
        )
    tp = _field_type(key)
    if _strip_optional(tp) is str and text.strip().lower() not in ("null", "none", "~"):
        return key, text  # strings stay verbatim: no YAML guessing on paths like 1e3.txt
    try:
        return key, yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"override {item!r}: the value is not valid YAML") from None


def key_type(key: str) -> Any:
    """The type of a `section.key`'s values (int, float, str, bool, a Literal...), None
    allowed or not; an unknown key is a ConfigError that suggests the closest."""
    return _strip_optional(_field_type(key))


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check and convert one value to the field's type, with an error that names the key."""
    inner = _strip_optional(tp)
    if inner is not tp and (value is None or str(value).strip().lower() in ("null", "none", "~")):
        return None
    origin = typing.get_origin(inner)
    if origin is Literal:
        choices = typing.get_args(inner)
        _require(value in choices, key, "one of " + ", ".join(choices), value)
        return value
    if origin is tuple:  # tuple[str, ...]: a list of strings, or one string
        items = [value] if isinstance(value, str) else value
        ok = isinstance(items, list) and all(isinstance(i, str) for i in items)
        _require(ok, key, "a list of strings", value)
        return tuple(items)
    if inner is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        _require(isinstance(value, bool), key, "true or false", value)
        return value
    if inner in (int, float):
        number = value
        if isinstance(value, str):  # YAML 1.1 reads `2e-3` as a string
            try:
                number = float(value)
            except ValueError:
                number = None
        ok = isinstance(number, (int, float)) and not isinstance(number, bool)
        if ok and inner is int:
            ok = float(number).is_integer()
        _require(ok, key, "an integer" if inner is int else "a number", value)
        return inner(number)
    if inner is str:
        _require(isinstance(value, str), key, "a string", value)
        return value
    raise TypeError(f"unsupported config field type {tp!r} for {key}")  # a charlstm bug


def _shown(value: Any) -> str:
    """A default as it is written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    if isinstance(value, str) and (not value.strip() or value != value.strip()):
        return json.dumps(value)
    return str(value)


def reference_table() -> str:
    """Every key, its default and its help, as the Markdown table of docs/pages/config.md."""
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            rows.append(f"| `{name}.{f.name}` | `{_shown(f.default)}` | {f.metadata['help']} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python -m charlstm.config: the table for docs/pages/config.md
    print(reference_table(), end="")
