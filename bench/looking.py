"""Time and memory of looking inside: the n-gram baseline on a 100 MB corpus, a probe
and --reach on a 1 MB text, each in a process of its own (peak RSS is the process's).

    .venv/bin/python -m bench.looking --checkpoint runs/python-code --text FILE [--mb 100]

The corpus is this Python's standard library sources, read in order until --mb
megabytes (again from the start if it runs out), under /tmp (never in the repository);
the 1 MB text is FILE repeated.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import machine

PARTS = {
    "baseline": "count a 6-gram on the corpus (at most its first 20 M characters) and "
    "score 2 M characters with it and the network",
    "probe": "probe 'string literal' on 200,000 characters (the most it reads)",
    "reach": "--reach at 256 positions of the 1 MB text",
}


def run_part(part: str, checkpoint: str, text: Path, corpus: Path) -> None:
    import numpy as np

    import charlstm
    from charlstm.inspect.features import builtin_features
    from charlstm.inspect.ngram import compare
    from charlstm.inspect.probe import probe_features
    from charlstm.inspect.reach import reach

    model = charlstm.load(checkpoint, device="cpu")
    started = time.perf_counter()
    if part == "baseline":
        ids = model.vocab.encode(corpus.read_text(encoding="utf-8"), unknown="skip")
        cut = int(len(ids) * 0.98)
        found = compare(model.net, model.vocab, ids[:cut], [ids[cut:]], 6)
        said = f"{found.train_chars:,} chars counted, {found.table_bytes / 1e6:.0f} MB of counts"
    elif part == "probe":
        ids = model.vocab.encode(text.read_text(encoding="utf-8")[:200_000], unknown="skip")
        shown = model.vocab.decode(ids.tolist())
        (found,) = probe_features(model.net, ids, {"s": builtin_features(shown)["string literal"]})
        said = f"AUC {found.probe.auc:.3f}, {found.probe.units} units"
    else:
        ids = model.vocab.encode(text.read_text(encoding="utf-8"), unknown="skip")
        found = reach(model.net, np.asarray(ids))
        said = f"loss at 256: {found.loss[-1]:.3f}, whole state {found.full_loss:.3f}"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"| {part} | {PARTS[part]} | {seconds:.1f} s | {peak:,.0f} MB | {said} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--text", required=True, type=Path)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--part", choices=list(PARTS))
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/charlstm-bench-corpus.txt"))
    args = parser.parse_args()
    if args.part:
        run_part(args.part, args.checkpoint, args.text, args.corpus)
        return
    source = args.text.read_text(encoding="utf-8")
    megabyte = (source * (2 + (1 << 20) // max(len(source), 1)))[: 1 << 20]
    one_mb = Path("/tmp/charlstm-bench-1mb.txt")
    one_mb.write_text(megabyte, encoding="utf-8")
    import sysconfig

    sources = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    written = 0
    with args.corpus.open("w", encoding="utf-8") as out:
        while written < args.mb << 20:
            for path in sources:
                try:
                    piece = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue
                out.write(piece)
                written += len(piece)
                if written >= args.mb << 20:
                    break
    print(machine())
    print("| what | work | time | peak RSS | result |\n| --- | --- | ---: | ---: | --- |")
    for part in PARTS:
        subprocess.run([sys.executable, "-m", "bench.looking", "--checkpoint", args.checkpoint,
                        "--text", str(one_mb), "--corpus", str(args.corpus), "--part", part],
                       check=True)  # fmt: skip


if __name__ == "__main__":
    main()
