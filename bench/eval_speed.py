"""Evaluation speed: `charlstm eval` on the tiny Shakespeare validation split against the
forward pass of training (batch 32 x bptt 64, no gradients).

    .venv/bin/python bench/eval_speed.py [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.common import machine, shakespeare_path
from charlstm.config import Config, ModelConfig
from charlstm.data.corpus import load_corpus
from charlstm.evaluate import evaluate_ids
from charlstm.model import CharRNN


@torch.no_grad()
def forward_chars_per_sec(
    model: CharRNN, ids: np.ndarray, batch: int, bptt: int, steps: int
) -> float:
    device = next(model.parameters()).device
    n = len(ids) // batch
    rows = torch.from_numpy(ids[: n * batch].astype(np.int64).reshape(batch, n)).to(device)
    _, state = model(rows[:, :bptt])  # warm-up: kernel selection, allocator
    start = time.perf_counter()
    for k in range(steps):
        logits, state = model(rows[:, k * bptt : (k + 1) * bptt], state)
    logits.sum().item()
    return steps * batch * bptt / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = Config.from_dict({}, [f"data.path={shakespeare_path()}", "data.val_fraction=0.1"])
    corpus = load_corpus(cfg.data)
    train, val = corpus.split(0.1)
    model = (
        CharRNN(corpus.vocab.size, ModelConfig(hidden_size=256, num_layers=2))
        .to(args.device)
        .eval()
    )
    print(f"# evaluation, {time.strftime('%Y-%m-%d')}, {machine()}, device {args.device}")
    print(f"model 2x256 LSTM, validation split {len(val):,} characters\n")
    fwd = forward_chars_per_sec(model, np.asarray(train), 32, 64, 60)
    print("| what | chars/s | vs training forward |")
    print("| --- | --- | --- |")
    print(f"| training forward, batch 32 x bptt 64 | {fwd:,.0f} | 1.00 |")
    for streams in (1, 16, 32):
        r = evaluate_ids(model, np.asarray(val), streams=streams, window=512)
        print(
            f"| eval, {streams} stream(s), window 512 | {r.chars_per_sec:,.0f} | {r.chars_per_sec / fwd:.2f} |"
        )
    one_char = time.perf_counter()
    x = torch.from_numpy(np.asarray(val[:2000]).astype(np.int64))[None].to(args.device)
    state = None
    with torch.no_grad():
        for i in range(2000):
            logits, state = model(x[:, i : i + 1], state)
        logits.sum().item()
    per_char = 2000 / (time.perf_counter() - one_char)
    print(
        f"| one character per forward call (what eval avoids) | {per_char:,.0f} | {per_char / fwd:.2f} |"
    )


if __name__ == "__main__":
    main()
