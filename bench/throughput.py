"""Training throughput: charlstm's Trainer against a hand-written PyTorch loop.

    .venv/bin/python bench/throughput.py [--device cpu|cuda] [--shapes 2x256,3x512]
    python3 -m bench.throughput --device cuda --shapes 3x512,3x1024 --scale 10

charlstm runs through the real Trainer with logging (every 10 steps), progress lines and
periodic checkpoints (every 100 steps) switched on. Its steady-state cost per step is the
difference of two runs of different lengths, so start-up, the final validation and the
final save cancel out; periodic saves and logging stay in. The reference is the minimal
loop of bench/common.py on the same rows, batch and bptt.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from bench.common import (
    ReferenceLoop,
    chars_per_sec,
    fmt_ratio,
    lstm_train_flops_per_char,
    machine,
    matmul_gflops,
    shakespeare_path,
)
from charlstm.config import Config
from charlstm.data.corpus import load_corpus
from charlstm.training.trainer import Trainer

# name: (layers, hidden, batch, bptt, short run steps, long run steps) on a CPU
SHAPES = {
    "2x256": (2, 256, 32, 64, 60, 240),
    "3x512": (3, 512, 32, 100, 12, 48),
    "3x1024": (3, 1024, 128, 128, 20, 80),
}
EMBEDDING = 64


def charlstm_seconds(shape: str, steps: int, args: argparse.Namespace, out: Path) -> float:
    layers, hidden, batch, bptt, *_ = SHAPES[shape]
    cfg = Config.from_dict(
        {},
        [
            f"data.path={shakespeare_path()}",
            "data.val_fraction=0.02",
            f"model.num_layers={layers}",
            f"model.hidden_size={hidden}",
            f"model.embedding_dim={EMBEDDING}",
            f"train.batch_size={batch}",
            f"train.bptt={bptt}",
            f"train.max_steps={steps}",
            "train.eval_every=1000000",
            f"train.checkpoint_every={args.checkpoint_every}",
            f"train.device={args.device}",
            f"train.precision={args.precision}",
            f"train.out_dir={out}",
            "log.log_every=10",
        ],
    )
    trainer = Trainer(cfg, console=Console(file=io.StringIO()), overwrite=True)
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start


def references(device: str) -> list[tuple[str, bool]]:
    """(name, bf16 autocast) of the hand-written loops to compare with: on CUDA both the
    plain float32 loop a user would write first and one with charlstm's bf16 autocast."""
    if device == "cuda":
        return [("hand-written fp32", False), ("hand-written bf16", True)]
    return [("hand-written", False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="2x256,3x512")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the step counts")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--precision", default="fp32", help="charlstm's train.precision")
    args = parser.parse_args()
    corpus = load_corpus(Config.from_dict({}, [f"data.path={shakespeare_path()}"]).data)
    cuda = args.device == "cuda"
    ceiling = matmul_gflops(n=4096 if cuda else 1024, device=args.device)
    print(f"# training throughput, {time.strftime('%Y-%m-%d')}, {machine()}, device {args.device}")
    print(f"float32 matmul: {ceiling:,.1f} GFLOP/s")
    if cuda:  # tensor cores: TF32 for charlstm's fp32, bf16 for its autocast
        torch.set_float32_matmul_precision("high")
        bf16 = matmul_gflops(n=8192, device="cuda", dtype=torch.bfloat16)
        tf32 = matmul_gflops(n=8192, device="cuda")
        torch.set_float32_matmul_precision("highest")
        print(f"TF32 matmul: {tf32:,.1f} GFLOP/s, bfloat16 matmul: {bf16:,.1f} GFLOP/s")
        ceiling = tf32 if args.precision == "fp32" else bf16
    print(f"charlstm: train.precision={args.precision}")
    print(
        "\n| shape | batch x bptt | reference | reference chars/s | charlstm chars/s | ratio "
        "| charlstm GFLOP/s | of matmul |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            layers, hidden, batch, bptt, short, long = SHAPES[shape]
            short, long = max(2, int(short * args.scale)), max(4, int(long * args.scale))
            loops = {
                name: ReferenceLoop(
                    corpus.ids,
                    corpus.vocab.size,
                    EMBEDDING,
                    hidden,
                    layers,
                    batch,
                    bptt,
                    device=args.device,
                    bf16=bf16,
                )
                for name, bf16 in references(args.device)
            }
            # Measured in turns, best of `repeats`: this machine's neighbours come and go,
            # and taking turns exposes both sides to them alike.
            ref_runs = {name: [] for name in loops}
            ours_runs = []
            for _ in range(args.repeats):
                for name, loop in loops.items():
                    ref_runs[name].append(chars_per_sec(loop, steps=long - short))
                t_short = charlstm_seconds(shape, short, args, Path(tmp) / "a")
                t_long = charlstm_seconds(shape, long, args, Path(tmp) / "b")
                ours_runs.append((long - short) * batch * bptt / (t_long - t_short))
            ours = max(ours_runs)
            gflops = (
                ours * lstm_train_flops_per_char(corpus.vocab.size, EMBEDDING, hidden, layers) / 1e9
            )
            for name, runs in ref_runs.items():
                print(
                    f"| {shape} | {batch} x {bptt} | {name} | {max(runs):,.0f} | {ours:,.0f} "
                    f"| {fmt_ratio(ours, max(runs))} | {gflops:,.1f} | {gflops / ceiling:.1%} |",
                    flush=True,
                )
            del loops
            if cuda:
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
