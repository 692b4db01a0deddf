"""Training throughput: charlstm's Trainer against a hand-written PyTorch loop.

    .venv/bin/python bench/throughput.py [--device cpu|cuda] [--shapes 2x256,3x512]

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
from charlstm.corpus import load_corpus
from charlstm.train import Trainer

# name: (layers, hidden, batch, bptt, short run steps, long run steps) on a CPU
SHAPES = {
    "2x256": (2, 256, 32, 64, 60, 240),
    "3x512": (3, 512, 32, 100, 12, 48),
    "3x1024": (3, 1024, 128, 128, 20, 80),
}
EMBEDDING = 64


def charlstm_seconds(shape: str, steps: int, device: str, out: Path) -> float:
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
            "train.checkpoint_every=100",
            f"train.device={device}",
            f"train.out_dir={out}",
            "log.log_every=10",
        ],
    )
    trainer = Trainer(cfg, console=Console(file=io.StringIO()), overwrite=True)
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="2x256,3x512")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the step counts")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    corpus = load_corpus(Config.from_dict({}, [f"data.path={shakespeare_path()}"]).data)
    ceiling = matmul_gflops(device=args.device)
    print(f"# training throughput, {time.strftime('%Y-%m-%d')}, {machine()}, device {args.device}")
    print(f"float32 matmul: {ceiling:.1f} GFLOP/s\n")
    print(
        "| shape | batch x bptt | hand-written chars/s | charlstm chars/s | ratio | charlstm GFLOP/s | of matmul |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            layers, hidden, batch, bptt, short, long = SHAPES[shape]
            short, long = max(2, int(short * args.scale)), max(4, int(long * args.scale))
            ref = ReferenceLoop(
                corpus.ids,
                corpus.vocab.size,
                EMBEDDING,
                hidden,
                layers,
                batch,
                bptt,
                device=args.device,
            )
            # Measured in turns, best of `repeats`: this machine's neighbours come and go,
            # and taking turns exposes both sides to them alike.
            ref_runs, ours_runs = [], []
            for _ in range(args.repeats):
                ref_runs.append(chars_per_sec(ref, steps=long - short))
                t_short = charlstm_seconds(shape, short, args.device, Path(tmp) / "a")
                t_long = charlstm_seconds(shape, long, args.device, Path(tmp) / "b")
                ours_runs.append((long - short) * batch * bptt / (t_long - t_short))
            ref_cps, ours = max(ref_runs), max(ours_runs)
            gflops = (
                ours * lstm_train_flops_per_char(corpus.vocab.size, EMBEDDING, hidden, layers) / 1e9
            )
            print(
                f"| {shape} | {batch} x {bptt} | {ref_cps:,.0f} | {ours:,.0f} | {fmt_ratio(ours, ref_cps)} "
                f"| {gflops:.1f} | {gflops / ceiling:.0%} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
