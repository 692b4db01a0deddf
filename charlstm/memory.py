"""Memory a model and its settings need, checked before anything is allocated: a size
that cannot fit is one line saying how many parameters and bytes it needs, never an
allocator's traceback (or a machine swapping itself to a halt).

The counts are exact for the parameters (tested against the built model); the bytes of
training add the gradients, AdamW's two moments, the weight average, and the
activations a TBPTT window keeps for the backward pass, all in float32: an estimate
meant to refuse what cannot work, not to pack memory to the last byte.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from charlstm.config import Config, ModelConfig
from charlstm.errors import ConfigError

GATES = {"lstm": 4, "peephole": 4, "gru": 3, "rnn": 1}
FLOAT = 4  # bytes


def parameter_count(vocab_size: int, m: ModelConfig) -> int:
    """The parameters of CharRNN(vocab_size, m), without building it."""
    gates = GATES[m.cell]
    count = vocab_size * m.embedding_dim  # embedding
    for layer in range(m.num_layers):
        inputs = m.embedding_dim if layer == 0 else m.hidden_size
        count += gates * m.hidden_size * (inputs + m.hidden_size + 2)  # W_ih, W_hh, 2 biases
        if m.cell == "peephole":
            count += 3 * m.hidden_size
    if not m.tie_weights:
        count += vocab_size * m.hidden_size  # decoder weight
    return count + vocab_size  # decoder bias


def training_bytes(vocab_size: int, cfg: Config, local_streams: int) -> int:
    m, t = cfg.model, cfg.train
    copies = 4 + (1 if t.ema is not None else 0)  # weights, grads, 2 moments, average
    weights = parameter_count(vocab_size, m) * copies * FLOAT
    steps = local_streams * t.bptt
    # per character: every layer's gates, c and h (kept for backward), the embedding,
    # and the logits with their softmax and gradient
    per_char = m.num_layers * m.hidden_size * (GATES[m.cell] + 2) * 2
    per_char += m.embedding_dim + 3 * vocab_size
    return weights + steps * per_char * FLOAT


def scoring_bytes(vocab_size: int, m: ModelConfig, streams: int, window: int) -> int:
    """One forward pass of `streams` x `window` characters, with no gradients."""
    per_char = m.num_layers * m.hidden_size * (GATES[m.cell] + 2) + 3 * vocab_size
    return streams * window * per_char * FLOAT


def available_bytes(device: torch.device) -> int | None:
    """Memory free for this process on `device`, or None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: what could be allocated without swapping
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # other Unix systems
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def amount(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000:
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} EB"


def check_training_fits(vocab_size: int, cfg: Config, local_streams: int, device) -> None:
    m, t = cfg.model, cfg.train
    needed = training_bytes(vocab_size, cfg, local_streams)
    free = available_bytes(device)
    if free is not None and needed > free:
        params = parameter_count(vocab_size, m)
        raise ConfigError(
            f"config: a {m.num_layers}x{m.hidden_size} {m.cell} over {vocab_size} symbols has "
            f"{params:,} parameters and needs about {amount(needed)} to train at "
            f"train.batch_size={t.batch_size}, train.bptt={t.bptt}; {device} has "
            f"{amount(free)} free: lower model.hidden_size, model.num_layers, "
            "train.batch_size or train.bptt"
        )


def check_scoring_fits(vocab_size: int, m: ModelConfig, streams: int, window: int, device) -> None:
    needed = scoring_bytes(vocab_size, m, streams, window)
    free = available_bytes(torch.device(device))
    if free is not None and needed > free:
        raise ConfigError(
            f"scoring {streams} streams x {window} characters at a time needs about "
            f"{amount(needed)}; {device} has {amount(free)} free: lower --streams or --window "
            "(train.eval_streams in training)"
        )
