"""Sampling speed: characters per second, flatness with length, overhead over the bare step.

    .venv/bin/python bench/sampling.py [--checkpoint runs/x] [--device cpu]

The bare step is the model's forward pass on one character per sample with the state
carried, and nothing else: the floor any sampler pays. Speed does not depend on what the
weights learned, so without --checkpoint a freshly initialised 2x256 LSTM is used.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import machine
from charlstm.checkpoint import load_for_inference
from charlstm.config import ModelConfig
from charlstm.data.vocab import Vocab
from charlstm.generate.sample import draw_texts, one_char_steps
from charlstm.model import CharRNN
from charlstm.options import SampleSettings


@torch.no_grad()
def bare_seconds_per_step(model: CharRNN, batch: int, steps: int) -> float:
    device = next(model.parameters()).device
    last = torch.zeros((batch, 1), dtype=torch.long, device=device)
    state = None
    with one_char_steps(device):  # the same kernel choice the sampler makes
        for _ in range(20):
            _, state = model(last, state)
        start = time.perf_counter()
        for _ in range(steps):
            logits, state = model(last, state)
        logits.sum().item()
    return (time.perf_counter() - start) / steps


def sample_seconds_per_step(model: CharRNN, vocab: Vocab, batch: int, length: int) -> float:
    """As `charlstm sample` does it: one sample streams its text, a batch does not."""
    settings = SampleSettings(length=length, temperature=0.8, seed=0, num_samples=batch)
    stream = (lambda _i, _piece: None) if batch == 1 else None
    draw_texts(model, vocab, "ab", SampleSettings(length=20, seed=0, num_samples=batch))
    start = time.perf_counter()
    draw_texts(model, vocab, "ab", settings, on_text=stream)
    return (time.perf_counter() - start) / length


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.checkpoint:
        from pathlib import Path

        model, saved = load_for_inference(Path(args.checkpoint), args.device)

        vocab = saved.vocab
    else:
        vocab = Vocab.from_code_points([10, *range(32, 127)])
        model = (
            CharRNN(vocab.size, ModelConfig(hidden_size=256, num_layers=2)).to(args.device).eval()
        )
    print(f"# sampling, {time.strftime('%Y-%m-%d')}, {machine()}, device {args.device}")
    print(
        f"model: {model.cfg.num_layers}x{model.cfg.hidden_size} {model.cfg.cell}, vocab {vocab.size}\n"
    )
    print(
        "| batch | bare step chars/s | sample 1,000 chars/s | sample 10,000 chars/s | "
        "10k vs 1k cost per char | overhead over bare step |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for batch in (1, 16):
        # best of three, measured in turns, so a noisy neighbour hits each alike
        bare, short, long = [], [], []
        for _ in range(3):
            bare.append(bare_seconds_per_step(model, batch, 2000))
            short.append(sample_seconds_per_step(model, vocab, batch, 1000))
            long.append(sample_seconds_per_step(model, vocab, batch, 10000))
        bare, short, long = min(bare), min(short), min(long)
        print(
            f"| {batch} | {batch / bare:,.0f} | {batch / short:,.0f} | {batch / long:,.0f} | "
            f"{long / short:.3f} | {long / bare - 1:+.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
