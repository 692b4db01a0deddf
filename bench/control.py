"""Text under control: loops measured down, and what constraints and long primes cost.

    .venv/bin/python -m bench.control --checkpoint runs/tiny [--prime "def "]

For each way of drawing, 2,000 characters after the prime: the share of character
20-grams that stand in the text more than once (a loop repeats them all), and chars/s.
Then the same run's plain sampling beside constrained sampling (the reference), and a
1 MB prime read as charlstm reads it (in windows) beside one pass (peak RSS of each, in
a process of its own).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections import Counter

import charlstm
from bench.common import machine

WAYS = [
    ("`--greedy`", dict(greedy=True)),
    ("`--greedy --repetition-penalty 1.3`", dict(greedy=True, repetition_penalty=1.3)),
    ("`--greedy --repetition-penalty 2`", dict(greedy=True, repetition_penalty=2.0)),
    ("`--greedy --repetition-penalty 3 --repetition-window 32`",
     dict(greedy=True, repetition_penalty=3.0, repetition_window=32)),
    ("`--greedy --no-repeat-ngram 8`", dict(greedy=True, no_repeat_ngram=8)),
    ("`--beam 4 --no-repeat-ngram 0`", dict(beam=4, no_repeat_ngram=0)),
    ("`--beam 4` (no 16-gram twice)", dict(beam=4)),
    ("`--beam 4 --no-repeat-ngram 8`", dict(beam=4, no_repeat_ngram=8)),
]  # fmt: skip
CONSTRAINTS = [
    ("plain sampling (the reference)", {}),
    ("`--regex '[a-z_ ]+'`", dict(regex="[a-z_ ]+")),
    ("`--contains return --ends-with ':'`", dict(contains=["return"], ends_with=":")),
]
LENGTH = 2000


def repeated(text: str, n: int = 20) -> float:
    grams = Counter(text[i : i + n] for i in range(len(text) - n + 1))
    return sum(c for c in grams.values() if c > 1) / max(1, sum(grams.values()))


def timed(model, prime: str, **options) -> tuple[str, float]:
    started = time.perf_counter()
    text = model.sample(prime=prime, length=LENGTH, **options)
    return text, LENGTH / (time.perf_counter() - started)


def prime_peak(checkpoint: str, whole: bool) -> tuple[float, float]:
    """Peak RSS (GB) and seconds of sampling after a 1 MB prime, in a process of its own."""
    code = (
        "import sys, time, resource, charlstm\n"
        "from charlstm.generate import context\n"
        f"context.WARM_WINDOW = {10**9 if whole else 'context.WARM_WINDOW'}\n"
        f"m = charlstm.load({checkpoint!r})\n"
        "prime = ('def f(x):\\n    return x\\n' * 50000)[:1_000_000]\n"
        "t = time.perf_counter(); m.sample(prime=prime, length=50, seed=1)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    kb, seconds = out.stdout.split()
    return int(kb) / 1e6, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="runs/tiny")
    parser.add_argument("--prime", default="def ")
    args = parser.parse_args()
    model = charlstm.load(args.checkpoint)
    print(f"machine: {machine()}; model: {model!r}; {LENGTH:,} characters after {args.prime!r}\n")
    print("| how | repeated 20-grams | chars/s |\n| --- | ---: | ---: |")
    for name, options in WAYS:
        text, speed = timed(model, args.prime, **options)
        print(f"| {name} | {repeated(text[len(args.prime) :]):.1%} | {speed:,.0f} |")
    print("\n| sampling (seed 1) | chars/s | vs plain |\n| --- | ---: | ---: |")
    plain = None
    for name, options in CONSTRAINTS:
        _, speed = timed(model, args.prime, seed=1, **options)
        plain = plain or speed
        print(f"| {name} | {speed:,.0f} | {speed / plain:.2f}x |")
    print("\n| a 1 MB prime, read | peak RSS | seconds |\n| --- | ---: | ---: |")
    for name, whole in (
        ("in one pass (the reference)", True),
        ("in 4,096-character windows", False),
    ):
        gb, seconds = prime_peak(args.checkpoint, whole)
        print(f"| {name} | {gb:.2f} GB | {seconds:.1f} |")


if __name__ == "__main__":
    main()
