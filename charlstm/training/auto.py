"""`train.auto`: the model and schedule for this corpus, this device and this time.

What it measures: the corpus (training characters, vocabulary size, one text or
documents and how long they are), the device (seconds per training step of two
candidate shapes, timed here: the smallest, and one a little beyond what the budget
seems to allow; the others follow linearly in parameter count, which is what a step's
work grows with) and the budget
(`train.max_seconds`; without one it plans for PLANNED_SECONDS and relies on
`train.patience` to stop).

How it decides (the rule was fitted on real runs: bench/autopilot.py --grid, the table
in bench/RESULTS.md section 10):
- Size: the largest candidate whose budget lets it see at least CHARS_PER_PARAMETER
  characters per parameter (3: on tiny Shakespeare a 2x256 GRU at ~3 beat a 2x128 at
  ~25 in 180 s, and a 2x128 at 12 beat a 2x256 at 1.6 in 60 s). When the budget reads a
  small corpus more than MANY_PASSES times, time is not what limits the model but
  memorising is, and early stopping keeps its best point: then SMALL_CORPUS_CHARS (1)
  per parameter is enough (on 50 KB in 60 s a 2x256 at 1.5 beat a 2x128 at 12).
- Regularisation by passes over the corpus: a run that reads its text several times
  gets weight decay 0.3 (the Shakespeare recipe at ~6 passes), more passes dropout 0.1
  (0.2 was better at ~15 passes over Shakespeare in 600 s, 0 better at ~22 passes of
  50 KB in 60 s with early stopping, and 0 better than 0.2 by 0.015 for a 2x384 LSTM of
  twice as many parameters as Shakespeare has characters at ~9 passes in 600 s: a model
  larger than its text needs no dropout sooner while early stopping keeps its best point,
  RESULTS 14e) and past 50 passes 0.3 (the names recipe);
  documents only past 50 passes (at ~12 passes over a list of words it cost 0.118).
- The rest from the hand-tuned recipes: an LSTM (under Muon it beat the GRU on
  Shakespeare, code and documents, by 0.03 to 0.13 nats at equal seconds: RESULTS 14;
  under AdamW the GRU had won on Shakespeare); batch 64 x bptt 64 for
  text; for documents a window as long as nearly every document and batch 32 (a row
  holds one document: short documents make short rows, and 32 of them give four times
  the updates 128 do for the same work, which paid in 240 s); the rate
  1e-2 at width 256, smaller as width grows (sqrt), 3e-3 for documents; 50 warm-up
  steps; the weight average (ema 0.995); bf16 where the CPU computes in it.
- The optimizer: Muon on the recurrent matrices where its step costs at most
  MUON_MAX_COST AdamW steps on this device (both timed at the chosen shape): it won at
  equal seconds on every corpus and cell measured, at costs from 1.10x to 1.98x.
- Watching: about VALIDATIONS validations over the run, each scoring a stretch that
  takes about VALIDATION_SHARE of the budget in all, and `train.patience` 3.
Every key the config or --set gives wins over the choice.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from charlstm.config import Config, ModelConfig, TrainConfig
from charlstm.device import training_precision
from charlstm.errors import ConfigError
from charlstm.memory import parameter_count
from charlstm.model import CharRNN
from charlstm.training.optim import decay_groups, make_optimizer

# (layers, width), smallest first
SHAPES = [(1, 128), (2, 128), (2, 192), (2, 256), (2, 384), (2, 512), (3, 512), (3, 768),
          (3, 1024)]  # fmt: skip
CHARS_PER_PARAMETER = 3.0  # fitted: RESULTS 10
MANY_PASSES = 10.0
SMALL_CORPUS_CHARS = 1.0
PLANNED_SECONDS = 3600.0  # what a run without a budget is sized for
VALIDATIONS = 8
VALIDATION_SHARE = 0.05
EVAL_SPEEDUP = 3.0  # validation reads about this much faster than training (budget.py)
PATIENCE = 3
TIMED_STEPS = 5
MUON_MAX_COST = 2.0  # Muon's step over AdamW's: it won up to 1.98x (RESULTS 14)


@dataclass(frozen=True)
class Facts:
    """What the choice is made from."""

    chars: int  # training characters (or document characters)
    vocab: int
    documents: int | None  # how many, or None for one text
    document_p95: int | None  # 95% of documents are at most this long (chars, end included)
    device: torch.device
    threads: int
    precision: str  # fp32 or bf16, as training will run
    seconds: float | None  # the budget
    document_mean: float | None = None  # documents: their mean length
    # what the user fixed of what a choice sets ("model.hidden_size": 32, ...): the choice is
    # made around it, what is timed is what will be trained, and the line says what will be
    given: dict[str, Any] = field(default_factory=dict)


def facts_of(ids: np.ndarray, vocab, cfg: Config, device: torch.device) -> Facts:
    documents = p95 = mean = None
    if vocab.documents:
        head = np.asarray(ids[:10_000_000])  # enough to know the lengths
        ends = np.flatnonzero(head == vocab.end_id)
        lengths = np.diff(ends) if len(ends) > 1 else np.array([len(head)])
        documents = max(1, int(round(len(ends) * len(ids) / max(1, len(head)))))
        p95 = int(np.percentile(lengths, 95))
        mean = float(lengths.mean())
    return Facts(
        chars=int(len(ids) * (1.0 - cfg.data.val_fraction)),
        vocab=vocab.size,
        documents=documents,
        document_p95=p95,
        device=device,
        threads=torch.get_num_threads(),
        precision=training_precision(
            cfg.train.precision if "train.precision" in cfg.explicit else "auto", device
        ),
        seconds=cfg.train.max_seconds,
        document_mean=mean,
        given={
            key: value
            for key, value in cfg.flat().items()
            if key in CHOSEN_KEYS and key in cfg.explicit
        },  # fmt: skip
    )


def seconds_per_step(
    facts: Facts, model: ModelConfig, batch: int, bptt: int, optimizer: str = "adamw"
) -> float:
    """One training step of this shape and optimizer on this device, timed (the random
    state is left as it was: the real model's initialisation does not depend on the
    probe)."""
    device = facts.device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        net = CharRNN(facts.vocab, model).to(device)
        settings = TrainConfig(optimizer=optimizer, lr=1e-3)
        updates = make_optimizer(net, settings, decay_groups(net, settings.weight_decay))
        ids = torch.randint(facts.vocab, (batch, bptt + 1), device=device)
        autocast = torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=facts.precision == "bf16"
        )

        def step() -> None:
            with autocast:
                logits, _ = net(ids[:, :-1], net.init_state(batch, device))
            loss = F.cross_entropy(logits.float().reshape(-1, facts.vocab), ids[:, 1:].reshape(-1))
            updates.zero_grad(set_to_none=True)
            loss.backward()
            updates.step()

        step()  # kernels chosen, memory allocated
        _sync(device)
        times = []
        for _ in range(TIMED_STEPS):
            started = time.perf_counter()
            step()
            _sync(device)
            times.append(time.perf_counter() - started)
        # the median: one step slowed by another job does not change the shape chosen
        return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Choice:
    settings: dict[str, Any]  # "section.key" -> value
    reason: str  # the log's one line


def _window(facts: Facts) -> tuple[int, int]:
    """(batch, bptt): as given, else what suits the corpus."""
    if facts.documents is not None:  # one document per row and window (fresh state): the
        bptt = int(min(256, max(16, math.ceil((facts.document_p95 + 1) / 8) * 8)))  # window
        batch = 32  # fits most; short rows: more updates for the same work (RESULTS 10b)
    else:
        batch, bptt = 64, 64
    return facts.given.get("train.batch_size", batch), facts.given.get("train.bptt", bptt)


def choose(facts: Facts, timer=seconds_per_step) -> Choice:
    documents = facts.documents is not None
    given = facts.given
    cell = given.get("model.cell", "lstm")
    embedding = given.get("model.embedding_dim", 32 if documents else 64)
    batch, bptt = _window(facts)
    shapes = _shapes_left(given)

    def shape(layers: int, width: int) -> ModelConfig:
        return ModelConfig(cell=cell, embedding_dim=embedding, hidden_size=width, num_layers=layers)

    params = [parameter_count(facts.vocab, shape(*s)) for s in shapes]
    seconds = facts.seconds if facts.seconds is not None else PLANNED_SECONDS
    training = seconds * (1.0 - VALIDATION_SHARE - 0.03)  # validations, the final save
    chars_per_step = batch * (min(bptt, facts.document_mean) if documents else bptt)

    def largest_fitting(step_seconds: list[float]) -> int:
        pick = 0
        for i, p in enumerate(params):
            seen = training / step_seconds[i] * chars_per_step
            many = seen / max(1, facts.chars) > MANY_PASSES
            if seen >= (SMALL_CORPUS_CHARS if many else CHARS_PER_PARAMETER) * p:
                pick = i
        return pick

    time_shape = _Probes(lambda i, optimizer: timer(facts, shape(*shapes[i]), batch, bptt,
                                                    optimizer))  # fmt: skip
    step_seconds = _step_seconds(time_shape, params, largest_fitting, seconds)
    pick = largest_fitting(step_seconds)
    layers, width = shapes[pick]
    optimizer, said = _optimizer(facts.given.get("train.optimizer"), lambda o: time_shape(pick, o))
    if optimizer == "muon":  # its steps are dearer: fewer of them in the budget
        step_seconds[pick] *= time_shape(pick, "muon") / time_shape(pick, "adamw")
    steps = max(1, int(training / step_seconds[pick]))
    passes = steps * chars_per_step / max(1, facts.chars)
    dropout, decay = _regularisation(passes, documents)
    lr = 3e-3 if documents else 1e-2 * min(1.0, math.sqrt(256 / width))
    settings = {
        "model.cell": cell,
        "model.num_layers": layers,
        "model.hidden_size": width,
        "model.embedding_dim": embedding,
        "model.dropout": dropout,
        "train.batch_size": batch,
        "train.bptt": bptt,
        "train.lr": lr,
        "train.weight_decay": decay,
        "train.optimizer": optimizer,
        **_watching(facts, seconds, steps, chars_per_step / step_seconds[pick]),
        **ALWAYS,
    }
    steps_said = (
        f"{_why_shape(shapes, passes)}: ~{steps:,} steps of {step_seconds[pick] * 1000:.0f} ms, "
        f"{passes:.1f} passes; {said}; {time_shape.said()}"
    )
    trained = {key: given.get(key, value) for key, value in settings.items()}
    return Choice(settings, _reason(facts, seconds, trained, steps_said))


class _Probes:
    """Each (shape, optimizer) timed once, and what the timing took, for the log."""

    def __init__(self, time_one: Callable[[int, str], float]):
        self.time_one, self.timed = time_one, {}
        self.started = time.perf_counter()

    def __call__(self, i: int, optimizer: str = "adamw") -> float:
        if (i, optimizer) not in self.timed:
            self.timed[i, optimizer] = self.time_one(i, optimizer)
        return self.timed[i, optimizer]

    def said(self) -> str:
        return f"{len(self.timed)} probes in {time.perf_counter() - self.started:.1f} s"


def _watching(facts: Facts, seconds: float, steps: int, chars_per_second: float) -> dict:
    """The schedule's and the validations' settings for a run of this many steps."""
    eval_chars = VALIDATION_SHARE / VALIDATIONS * seconds * EVAL_SPEEDUP * chars_per_second
    return {
        "train.warmup_steps": min(50, max(1, steps // 10)),
        "train.decay_steps": None if facts.seconds is not None else steps,
        "train.eval_every": max(10, steps // VALIDATIONS),
        "train.checkpoint_every": max(10, steps // VALIDATIONS),
        "train.eval_chars": int(min(100_000, max(10_000, eval_chars))),
    }


def _why_shape(shapes: list[tuple[int, int]], passes: float) -> str:
    if len(shapes) == 1:
        return "the shape given"
    need = SMALL_CORPUS_CHARS if passes > MANY_PASSES else CHARS_PER_PARAMETER
    return f"the largest shape the budget feeds {need:g} chars per parameter"


def _optimizer(given: str | None, time_pick: Callable[[str], float]) -> tuple[str, str]:
    """(the optimizer, why in words). Muon takes more work per step (its Newton-Schulz
    iterations), and what that costs depends on the shape and the device: it is chosen
    where its step costs at most MUON_MAX_COST of AdamW's here, the cost at which it
    still won at equal seconds (bench/RESULTS.md 13)."""
    if given is not None:
        return given, f"{given} as given"
    cost = time_pick("muon") / time_pick("adamw")
    if cost <= MUON_MAX_COST:
        return "muon", f"Muon: its step costs {cost:.2f}x AdamW's here"
    return "adamw", f"AdamW: a Muon step costs {cost:.2f}x here"


def _step_seconds(
    time_shape: Callable[..., float], params: list[int], fits: Callable, seconds: float
) -> list[float]:
    """Each shape's seconds per step. The smallest shape is timed; a step's time
    proportional to parameters overestimates the larger ones (fixed costs), so the second
    shape timed is two beyond that guess (and cheap enough to time: its TIMED_STEPS + 1
    steps within 2% of the budget); the others lie on the line through the two."""
    small = time_shape(0)
    if len(params) == 1:
        return [small]
    proportional = [small * p / params[0] for p in params]
    second = min(len(params) - 1, max(3, fits(proportional) + 2))
    while second > 1 and proportional[second] * (TIMED_STEPS + 1) > 0.02 * seconds:
        second -= 1
    large = time_shape(second)
    slope = max(0.0, (large - small) / max(1, params[second] - params[0]))
    return [small + slope * (p - params[0]) for p in params]


# What every automatic run sets, whatever the corpus.
ALWAYS = {"train.ema": 0.995, "train.precision": "auto", "train.max_steps": None,
          "train.patience": PATIENCE}  # fmt: skip


def _reason(facts: Facts, seconds: float, chosen: dict[str, Any], steps: str) -> str:
    """The one line that says what was chosen, and from what."""
    c = {key.split(".")[1]: value for key, value in chosen.items()}
    on = f"{facts.device.type.upper()}" + (
        f" ({facts.threads} threads)" if facts.device.type == "cpu" else ""
    )
    what = f"{facts.documents:,} documents" if facts.documents is not None else _chars(facts.chars)
    budget = (
        f"{seconds:.0f} s"
        if facts.seconds is not None
        else f"until it stops improving (planned {seconds:.0f} s)"
    )
    return (
        f"{what}, {facts.vocab} symbols, {budget} on {on}"
        f"{' in bf16' if facts.precision == 'bf16' else ''}: {c['num_layers']}x"
        f"{c['hidden_size']} {c['cell'].upper()}, batch {c['batch_size']}, bptt {c['bptt']}, "
        f"dropout {c['dropout']:g}, weight decay {c['weight_decay']:g}, lr {c['lr']:.2g} "
        f"({steps})"
    )


def _shapes_left(given: dict[str, Any]) -> list[tuple[int, int]]:
    """The ladder's (layers, width) in the dimensions the user left open: both given,
    the one shape; one given, the ladder's values of the other beside it."""
    layers, width = given.get("model.num_layers"), given.get("model.hidden_size")
    if layers is not None and width is not None:
        return [(layers, width)]
    if layers is not None:
        return [(layers, w) for w in dict.fromkeys(w for _, w in SHAPES)]
    if width is not None:
        return [(n, width) for n in dict.fromkeys(n for n, _ in SHAPES)]
    return SHAPES


def _chars(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit} chars"
    return f"{n} chars"


def _regularisation(passes: float, documents: bool) -> tuple[float, float]:
    """(dropout, weight decay) for a run that reads its corpus this many times. Short
    documents are another matter: at ~12 passes over 32,000 words, weight decay 0.3 and
    dropout 0.1 cost 0.118 nats/char against none (RESULTS 10b), early stopping guards
    them; past 50 passes the names recipe's dropout 0.3."""
    if documents:
        return (0.3, 0.01) if passes >= 50 else (0.0, 0.01)
    if passes < 2:
        return 0.0, 0.01
    if passes < MANY_PASSES:
        return 0.0, 0.3
    if passes < 50:
        return 0.1, 0.3
    return 0.3, 0.3


# Every key a choice sets (choose() returns all of them).
CHOSEN_KEYS = (
    "model.cell", "model.num_layers", "model.hidden_size", "model.embedding_dim",
    "model.dropout", "train.batch_size", "train.bptt", "train.lr", "train.warmup_steps",
    "train.weight_decay", "train.ema", "train.precision", "train.max_steps",
    "train.decay_steps", "train.eval_every", "train.checkpoint_every", "train.eval_chars",
    "train.patience", "train.optimizer",
)  # fmt: skip


def left_to_choose(cfg: Config) -> bool:
    """Whether the config leaves any key to the choice (else nothing need be timed)."""
    return any(key not in cfg.explicit for key in CHOSEN_KEYS)


def apply(cfg: Config, choice: Choice) -> Config:
    """The config with the choice filled in wherever the user gave no value."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in choice.settings.items():
        if key in cfg.explicit:
            continue
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    return replace(
        cfg, **{name: replace(getattr(cfg, name), **values) for name, values in sections.items()}
    )


def check_auto(cfg: Config, fine_tune: bool, distributed: bool) -> None:
    if fine_tune:
        raise ConfigError(
            "config: train.auto chooses a model, and a fine-tune (train.init_from) takes its "
            "base's: drop one of them"
        )
    if distributed:
        raise ConfigError(
            "config: train.auto times this machine alone: under torchrun, train with the "
            "config an auto run on one machine wrote (its config.yaml)"
        )
