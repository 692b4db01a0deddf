"""Steering, measured: a probe finds the unit that carries "inside a string literal" on
code the model never read, then that unit is clamped and the share of generated
characters inside string literals is counted, against the unclamped model.

    .venv/bin/python -m bench.steering --checkpoint runs/python-code --text FILE.py

Each row: 32 samples of 300 characters from the prime, seeds 0..31, the same seeds for
every row; strings are found by charlstm inspect's own scanner (inspect/features.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import charlstm
from bench.common import machine
from charlstm.data.corpus import read_text_file
from charlstm.inspect.features import builtin_features, strings_and_comments
from charlstm.inspect.probe import probe_features

SAMPLES, LENGTH = 32, 300
PRIME = "def main():\n    "


def string_share(model, clamp: list[str]) -> float:
    inside = total = 0
    for seed in range(SAMPLES):
        text = model.sample(PRIME, length=LENGTH, seed=seed, temperature=0.8, clamp=clamp)
        strings, _ = strings_and_comments(text)
        inside += int(np.asarray(strings)[len(PRIME) :].sum())
        total += len(text) - len(PRIME)
    return inside / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--text", required=True, help="Python the model did not train on")
    args = parser.parse_args()
    print(machine())
    model = charlstm.load(args.checkpoint, device="cpu")
    text = read_text_file(__import__("pathlib").Path(args.text))[:40_000]
    ids = model.vocab.encode(text, unknown="skip")
    shown = model.vocab.decode(ids.tolist())
    started = time.perf_counter()
    (found,) = probe_features(
        model.net, ids, {"string literal": builtin_features(shown)["string literal"]}
    )
    print(f"probe: AUC {found.probe.auc:.3f} with {found.probe.units} units "
          f"(embedding {found.embedding.auc:.3f}, shuffled {found.shuffled.auc:.3f}); "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    best = found.best_unit
    print(
        f"best single unit: {best['quantity']} {best['layer']}:{best['unit']} AUC {best['auc']:.3f}"
    )
    layer, unit = best["layer"], best["unit"]
    print(f"\n| clamp h {layer}:{unit} | characters inside strings |")
    print("| ---: | ---: |")
    print(f"| none | {string_share(model, []):.1%} |")
    for value in (-1.0, -0.5, 0.0, 0.5, 1.0):
        print(f"| {value:+.1f} | {string_share(model, [f'{layer}:{unit}={value}']):.1%} |")


if __name__ == "__main__":
    main()
