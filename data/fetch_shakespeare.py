"""Put tiny Shakespeare (1.1 MB, public domain: the corpus of char-rnn) at
data/tinyshakespeare.txt, for configs/shakespeare*.yaml and the benchmarks: a copy of
$CHARLSTM_SHAKESPEARE when set, else a download from char-rnn's repository. `make
get-data` runs it; the size is checked, and nothing is left half written."""

from __future__ import annotations

import os
import shutil
import sys
import urllib.request
from pathlib import Path

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SIZE = 1_115_394
TARGET = Path(__file__).resolve().parent / "tinyshakespeare.txt"


def main() -> None:
    if TARGET.is_file() and TARGET.stat().st_size == SIZE:
        print(f"{TARGET} is already there")
        return
    tmp = TARGET.with_name(TARGET.name + ".tmp")
    source = os.environ.get("CHARLSTM_SHAKESPEARE")
    try:
        if source:
            shutil.copyfile(source, tmp)
        else:
            with urllib.request.urlopen(URL, timeout=30) as response, open(tmp, "wb") as out:
                shutil.copyfileobj(response, out)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        where = source or URL
        sys.exit(f"could not get tiny Shakespeare from {where}: {error}; download it yourself "
                 f"to {TARGET}, or set CHARLSTM_SHAKESPEARE=/path/to/input.txt")  # fmt: skip
    size = tmp.stat().st_size
    if size != SIZE:
        tmp.unlink()
        sys.exit(f"{source or URL} is {size:,} bytes, not tiny Shakespeare's {SIZE:,}")
    os.replace(tmp, TARGET)
    print(f"{TARGET}: {SIZE:,} bytes")


if __name__ == "__main__":
    main()
