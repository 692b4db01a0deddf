"""Corpus scale: encoding generated corpora of 10, 50 and 200 MB, first run and cached.

    .venv/bin/python bench/corpus_scale.py [--sizes 10,50,200]

Each encode runs in a fresh process, so its peak resident memory (ru_maxrss) is its own;
the baseline is the same process after importing everything and before encoding.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from charlstm.config import DataConfig
from charlstm.corpus import load_corpus
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
c = load_corpus(DataConfig(path=sys.argv[1], cache_dir=sys.argv[2]))
int(c.ids[-1])
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "base_kb": base, "peak_kb": peak, "chars": len(c.ids),
                  "bytes": c.ids.nbytes, "vocab": c.vocab.size}))
"""


def write_corpus(path: Path, megabytes: int) -> None:
    """Code-like text with some non-ASCII, from a fixed seed."""
    rng = random.Random(megabytes)
    words = [
        "def",
        "return",
        "self",
        "value",
        "index",
        "naïve",
        "größe",
        "λ",
        "→",
        "data",
        "for",
        "in",
    ]
    lines = [
        ("    " * rng.randint(0, 3)) + " ".join(rng.choice(words) for _ in range(rng.randint(2, 9)))
        for _ in range(5000)
    ]
    block = ("\n".join(lines) + "\n").encode()
    with open(path, "wb") as f:
        for _ in range(megabytes * 2**20 // len(block) + 1):
            f.write(block)


def measure(path: Path, cache: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(cache)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200")
    args = parser.parse_args()
    print(f"# corpus scale, {time.strftime('%Y-%m-%d')}\n")
    print(
        "| corpus MB | chars | first encode s | s per MB | peak RSS over baseline MB | "
        "encoded array MB | cached run s |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for mb in (int(s) for s in args.sizes.split(",")):
            path, cache = Path(tmp) / f"c{mb}.txt", Path(tmp) / f"cache{mb}"
            write_corpus(path, mb)
            size_mb = path.stat().st_size / 2**20
            first = measure(path, cache)
            again = measure(path, cache)
            extra = (first["peak_kb"] - first["base_kb"]) / 1024
            print(
                f"| {size_mb:.0f} | {first['chars']:,} | {first['seconds']:.1f} | "
                f"{first['seconds'] / size_mb:.3f} | {extra:.0f} | {first['bytes'] / 2**20:.0f} | "
                f"{again['seconds']:.2f} |",
                flush=True,
            )
            path.unlink()


if __name__ == "__main__":
    main()
