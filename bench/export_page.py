"""The exported web page: size and characters per second in headless Chromium.

    .venv/bin/python -m bench.export_page [--hidden 288] [--length 3000]

A freshly initialised 2-layer LSTM of about 1 M parameters (speed and size do not depend
on what the weights learned) over a 96-character vocabulary is exported with float16
and float32 weights; each page generates --length characters in headless Chromium
(autorun, sampled at temperature 0.8) and reports its own rate. The reference, in the
same run: `charlstm sample` on the CPU with the same model, batch 1.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from bench.common import machine
from charlstm.api import Model
from charlstm.config import Config
from charlstm.data.vocab import Vocab
from charlstm.export.page import export_page
from charlstm.model import CharRNN


def page_rate(page: Path, length: int, profile: Path) -> float:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update",
         f"--user-data-dir={profile}", "--dump-dom",
         f"{page.as_uri()}#prime=def%20&length={length}&seed=1&autorun=1"],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    return float(re.search(r'data-chars-per-sec="([0-9.]+)"', dom).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=288)
    parser.add_argument("--length", type=int, default=3000)
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = Config.from_dict({}, [f"model.hidden_size={args.hidden}", "model.num_layers=2"])
    vocab = Vocab.from_code_points(range(32, 128))
    net = CharRNN(vocab.size, cfg.model).eval()
    model = Model(net, vocab, cfg, {"step": 0}, torch.device("cpu"))
    torch.set_num_threads(1)  # the page has one thread too
    start = time.perf_counter()
    model.sample(prime="def ", length=args.length, seed=1)
    torch_rate = args.length / (time.perf_counter() - start)
    print(f"# export page, {time.strftime('%Y-%m-%d')}, {machine()}\n")
    print(f"model: 2x{args.hidden} LSTM, {net.num_parameters():,} parameters, vocab 96\n")
    print(
        "| page | size MB | chars/s in headless Chromium | `charlstm sample` chars/s (1 thread) |"
    )
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp16", "fp32"):
            page = Path(tmp) / f"{precision}.html"
            size = export_page(model, page, precision).bytes / 1e6
            rate = page_rate(page, args.length, Path(tmp) / "profile")
            print(f"| {precision} | {size:.2f} | {rate:,.0f} | {torch_rate:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
