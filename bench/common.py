"""Helpers shared by the benchmarks: the corpus, a hand-written reference loop, timing."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charlstm.model import CELLS

ROOT = Path(__file__).resolve().parent.parent


def shakespeare_path() -> Path:
    """tiny Shakespeare: $CHARLSTM_SHAKESPEARE, data/, or the shared folder beside the repo."""
    candidates = [
        os.environ.get("CHARLSTM_SHAKESPEARE"),
        ROOT / "data/tinyshakespeare.txt",
        ROOT.parent / "shared/data/tinyshakespeare.txt",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    raise SystemExit("tiny Shakespeare not found: set CHARLSTM_SHAKESPEARE=/path/to/input.txt")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"


def matmul_gflops(
    n: int = 1024, device: str = "cpu", seconds: float = 2.0, dtype: torch.dtype = torch.float32
) -> float:
    """Matmul GFLOP/s (float32 unless told): a practical ceiling for this machine."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def lstm_train_flops_per_char(vocab: int, emb: int, hidden: int, layers: int) -> float:
    """Multiply-adds x 2 of the LSTM layers and decoder, forward + backward (~3x forward)."""
    forward = sum(2 * 4 * hidden * ((emb if i == 0 else hidden) + hidden) for i in range(layers))
    forward += 2 * hidden * vocab
    return 3 * forward


class ReferenceLoop:
    """The minimal hand-written PyTorch char-LSTM: embedding, nn.LSTM, linear, AdamW,
    clipping, TBPTT over pre-built contiguous rows. What charlstm is measured against."""

    def __init__(
        self,
        ids: np.ndarray,
        vocab: int,
        emb: int,
        hidden: int,
        layers: int,
        batch: int,
        bptt: int,
        lr: float = 2e-3,
        device: str = "cpu",
        seed: int = 0,
        cell: str = "lstm",
        bf16: bool = False,
    ):
        torch.manual_seed(seed)
        # bf16 autocast around the forward pass, as charlstm trains on CUDA
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        )
        self.vocab, self.batch, self.bptt, self.device = vocab, batch, bptt, device
        self.embedding = nn.Embedding(vocab, emb).to(device)
        # nn.LSTM unless another cell is compared (bench/cells.py)
        self.rnn = CELLS[cell](emb, hidden, layers, batch_first=True).to(device)
        self.decoder = nn.Linear(hidden, vocab).to(device)
        self.params = [
            *self.embedding.parameters(),
            *self.rnn.parameters(),
            *self.decoder.parameters(),
        ]
        self.optimizer = torch.optim.AdamW(self.params, lr=lr)
        n = len(ids) // batch
        self.rows = torch.from_numpy(ids[: n * batch].astype(np.int64).reshape(batch, n)).to(device)
        self.windows = (n - 1) // bptt
        self.step, self.state = 0, None

    def train_step(self) -> torch.Tensor:
        k = self.step % self.windows
        if k == 0:
            self.state = None
        chunk = self.rows[:, k * self.bptt : k * self.bptt + self.bptt + 1]
        with self.autocast:
            logits, state = self.forward(chunk[:, :-1], self.state)
        loss = F.cross_entropy(logits.float().reshape(-1, self.vocab), chunk[:, 1:].reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.state = (
            tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        )
        self.step += 1
        return loss

    def forward(self, ids: torch.Tensor, state):
        out, state = self.rnn(self.embedding(ids), state)
        return self.decoder(out), state

    def set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @torch.no_grad()
    def val_loss(self, ids: np.ndarray, window: int = 1024) -> float:
        """One in-order pass with carried state, like charlstm eval --streams 1."""
        x = torch.from_numpy(ids.astype(np.int64)).to(self.device)[None]
        total, state = 0.0, None
        for c0 in range(0, x.shape[1] - 1, window):
            chunk = x[:, c0 : c0 + window + 1]
            logits, state = self.forward(chunk[:, :-1], state)
            logits = logits[0]
            total += F.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
        return total / (x.shape[1] - 1)


def chars_per_sec(loop: ReferenceLoop, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        loop.train_step()
    start = time.perf_counter()
    for _ in range(steps):
        loss = loop.train_step()
    loss.item()
    if loop.device == "cuda":
        torch.cuda.synchronize()
    return steps * loop.batch * loop.bptt / (time.perf_counter() - start)


def fmt_ratio(ours: float, ref: float) -> str:
    return f"{ours / ref:.3f}" if ref and math.isfinite(ref) else "n/a"
