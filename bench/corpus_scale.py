"""Corpus scale: generated code corpora of many files, from megabytes to gigabytes.

    .venv/bin/python -m bench.corpus_scale [--sizes 10,200,1024,4096] [--dir /tmp]
    .venv/bin/python -m bench.corpus_scale --formats 1024 [--dir /tmp]

Each corpus is a folder of ~20 KB files of code-like text, mostly ASCII, with one line
in 40 in other scripts (Greek, Cyrillic, CJK, accented Latin), so the vocabulary has
more than 256 characters and ids take two bytes, as in a real multilingual code base.
For each size, in fresh processes:

- first encode: seconds, MB/s of UTF-8, peak RSS;
- warm start: a new `Trainer` (fingerprint lookup, memory map, model) up to the end of
  its first training step, in seconds;
- a 20-step training run of the default 2x256 LSTM with one validation of the default
  train.eval_chars: peak RSS of the whole process, and the validation's seconds;
- for reference, the size of the encoded array: what a full in-RAM copy would add.

With --formats MB, one corpus of that size is read three ways in fresh processes, side
by side: as the folder, as one .tar.xz of that folder (xz preset 1), and as one .jsonl
with a record per file (its text in "text"): first-encode seconds, MB/s of text, and
peak RSS for each.

Corpora are written under --dir and deleted afterwards (never commit them).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

ENCODE = r"""
import json, resource, sys, time
from rich.console import Console
from charlstm.config import DataConfig
from charlstm.data.corpus import load_corpus
start = time.perf_counter()
c = load_corpus(DataConfig(path=sys.argv[1], cache_dir=sys.argv[2]), Console(stderr=True))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "chars": len(c.ids), "bytes": c.ids.nbytes,
                  "vocab": c.vocab.size,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

TRAIN = r"""
import time
started = time.perf_counter()
import json, resource, sys
from rich.console import Console
from charlstm.config import Config
from charlstm.training.trainer import Trainer
cfg = Config.from_dict({}, [f"data.path={sys.argv[1]}", f"data.cache_dir={sys.argv[2]}",
    f"train.out_dir={sys.argv[3]}", "train.max_steps=20", "train.eval_every=20",
    "train.checkpoint_every=20", "train.device=cpu", "log.sample_length=0"])
trainer = Trainer(cfg, console=Console(stderr=True), quiet=True, overwrite=True)
marks = {}
step, validate = trainer.train_step, trainer._validate
def first_step():
    out = step()
    marks.setdefault("first_step", time.perf_counter() - started)
    return out
def timed_validation(*args):
    t = time.perf_counter()
    validate(*args)
    marks["validation"] = time.perf_counter() - t
trainer.train_step, trainer._validate = first_step, timed_validation
trainer.run()
marks["eval_chars"] = len(trainer.data.val_ids) - 1
marks["peak_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(marks))
"""

ALPHABETS = [
    range(0x391, 0x3CA),  # Greek
    range(0x410, 0x450),  # Cyrillic
    range(0x4E00, 0x4E00 + 160),  # CJK
    range(0xC0, 0x180),  # accented Latin
]


def text_pool(megabytes: int = 8, seed: int = 0) -> bytes:
    """Code-like lines, one in 40 with words in other scripts."""
    rng = random.Random(seed)
    words = "def return self value index data for in if else while None True len".split()
    words += ["(", ")", "[", "]", ":", "=", "+=", "==", "#", "x", "y", "i", "0", "1"]
    foreign = [chr(c) for a in ALPHABETS for c in a]
    out, size = [], 0
    while size < megabytes << 20:
        n = rng.randint(2, 10)
        if rng.random() < 1 / 40:
            line = " ".join("".join(rng.choices(foreign, k=rng.randint(1, 6))) for _ in range(n))
        else:
            line = " ".join(rng.choices(words, k=n))
        line = "    " * rng.randint(0, 3) + line + "\n"
        out.append(line)
        size += len(line.encode())
    return "".join(out).encode()


def write_corpus(root: Path, megabytes: int, file_kb: int = 20) -> int:
    """A folder of `megabytes` MB in files of about `file_kb` KB; returns the file count."""
    pool, rng = text_pool(), random.Random(megabytes)
    total, count = 0, 0
    while total < megabytes << 20:
        start = pool.index(b"\n", rng.randrange(len(pool) - 2 * file_kb * 1024)) + 1
        end = pool.index(b"\n", start + file_kb * 1024) + 1
        folder = root / f"d{count // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{count:07d}.py").write_bytes(pool[start:end])
        total, count = total + end - start, count + 1
    return count


def write_formats(folder: Path, work: Path) -> dict[str, Path]:
    """The folder's files as one .tar.xz and as one .jsonl (a record per file)."""
    import tarfile

    files = sorted(folder.rglob("*.py"))
    tar_path, jsonl_path = work / "corpus.tar.xz", work / "corpus.jsonl"
    with tarfile.open(tar_path, "w:xz", preset=1) as tar:
        for f in files:
            tar.add(f, arcname=f.relative_to(folder).as_posix())
    with open(jsonl_path, "w", encoding="utf-8") as out:
        for f in files:
            record = {"path": f.relative_to(folder).as_posix(), "text": f.read_text()}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return {"folder": folder, ".tar.xz": tar_path, ".jsonl": jsonl_path}


def formats(mb: int, where: Path) -> None:
    print(f"# corpus formats, {mb:,} MB of text, {time.strftime('%Y-%m-%d')}\n")
    print("| read as | file MB | chars | encode s | text MB/s | encode peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    work = where / f"charlstm-formats-{mb}"
    shutil.rmtree(work, ignore_errors=True)
    try:
        write_corpus(work / "corpus", mb)
        for name, path in write_formats(work / "corpus", work).items():
            size = (
                sum(f.stat().st_size for f in path.rglob("*"))
                if path.is_dir()
                else path.stat().st_size
            )
            first = child(ENCODE, str(path), str(work / f"cache-{name.strip('.')}"))
            print(
                f"| {name} | {size / 2**20:,.0f} | {first['chars']:,} | {first['seconds']:.1f} | "
                f"{mb / first['seconds']:.0f} | {first['peak_kb'] / 1024:.0f} |",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def child(script: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,200,1024,4096", help="MB, comma-separated")
    parser.add_argument("--dir", default="/tmp", help="where corpora are generated")
    parser.add_argument("--formats", type=int, metavar="MB", help="folder vs .tar.xz vs .jsonl")
    args = parser.parse_args()
    if args.formats:
        formats(args.formats, Path(args.dir))
        return
    print(f"# corpus scale, {time.strftime('%Y-%m-%d')}\n")
    print(
        "| corpus MB | files | chars | vocab | encode s | encode MB/s | encode peak RSS MB "
        "| warm start to step 1 s | 20-step train peak RSS MB | validation s (chars) "
        "| ids array MB (an in-RAM copy) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for mb in (int(s) for s in args.sizes.split(",")):
        work = Path(args.dir) / f"charlstm-scale-{mb}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            files = write_corpus(work / "corpus", mb)
            corpus, cache = str(work / "corpus"), str(work / "cache")
            first = child(ENCODE, corpus, cache)
            os.sync()  # the cache file's writeback is the encode's cost, not the next run's
            train = child(TRAIN, corpus, cache, str(work / "run"))
            print(
                f"| {mb:,} | {files:,} | {first['chars']:,} | {first['vocab']} | "
                f"{first['seconds']:.1f} | {mb / first['seconds']:.0f} | "
                f"{first['peak_kb'] / 1024:.0f} | {train['first_step']:.2f} | "
                f"{train['peak_kb'] / 1024:.0f} | {train['validation']:.1f} "
                f"({train['eval_chars']:,}) | {first['bytes'] / 2**20:,.0f} |",
                flush=True,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
