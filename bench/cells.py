"""Training speed of each recurrent cell against PyTorch's fused LSTM.

    .venv/bin/python -m bench.cells [--steps 30] [--shape 2x256] [--batch 32] [--bptt 64]

The same minimal loop (embedding, cell, linear, AdamW, clipping, TBPTT) with nn.LSTM,
nn.GRU, nn.RNN and charlstm's peephole LSTM (a TorchScript loop over time steps, since
no fused kernel has peepholes). Measured in turns, best of two, on random ids.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from bench.common import ReferenceLoop, chars_per_sec, fmt_ratio, machine

CELLS = ("lstm", "gru", "rnn", "peephole")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--shape", default="2x256")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--bptt", type=int, default=64)
    args = parser.parse_args()
    layers, hidden = map(int, args.shape.split("x"))
    ids = np.random.default_rng(0).integers(0, 65, size=200_000).astype(np.uint8)
    loops = {
        cell: ReferenceLoop(ids, 65, 64, hidden, layers, args.batch, args.bptt, cell=cell)
        for cell in CELLS
    }
    best = dict.fromkeys(CELLS, 0.0)
    for _ in range(2):
        for cell, loop in loops.items():
            best[cell] = max(best[cell], chars_per_sec(loop, args.steps))
    print(f"# recurrent cells, {machine()}, torch {torch.__version__}")
    print(f"{args.shape}, batch {args.batch} x bptt {args.bptt}, training steps\n")
    print("| cell | chars/s | vs fused nn.LSTM |")
    print("| --- | --- | --- |")
    for cell in CELLS:
        print(f"| {cell} | {best[cell]:,.0f} | {fmt_ratio(best[cell], best['lstm'])} |")


if __name__ == "__main__":
    main()
