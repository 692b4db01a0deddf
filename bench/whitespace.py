"""Samples that collapse into whitespace: greedy, beam and sampled text on a trained model.

    .venv/bin/python -m bench.whitespace --checkpoint runs/python-code [--checkpoint runs/prose]

For each model, ten primes (none, and nine line openings of its kind), measured three ways:
as generation used to be (the prime read from the zero state, beam search without a rule
against loops: the reference), from a line start alone, and as it is now (a line start,
and a beam of 2 or more repeating no 16-character string):
- greedy and beam (width 8), 200 characters: the share of samples more than two thirds
  whitespace, and the share holding a whitespace run of over 40 characters;
- sampled at temperature 0.8 (20 seeds a prime): the mean count of whitespace characters
  right after the prime, and the share of samples more than two thirds whitespace.
"""

from __future__ import annotations

import argparse
import re
from statistics import mean
from unittest import mock

import charlstm
from bench.common import machine
from charlstm.generate import context

CODE_PRIMES = [
    "",
    "def ",
    "class ",
    "import ",
    "    return ",
    "if ",
    "for i in ",
    "# ",
    "x = ",
    "@",
]
PROSE_PRIMES = ["", "ROMEO:", "The ", "KING ", "What ", "I ", "And ", "First ", "O, ", "My "]
LONG_BLANK = re.compile(r"\s{41,}")


def zero_state_context(vocab, prime, unknown):
    """Where generation started before: the prime read from the zero state."""
    prime_ids = vocab.encode(prime, unknown=unknown).tolist() if prime else []
    return vocab.decode(prime_ids), prime_ids or [context.line_start_id(vocab)]


def mostly_blank(text: str) -> bool:
    return sum(c.isspace() for c in text) > 2 * len(text) / 3


def leading_blank(text: str) -> int:
    return len(text) - len(text.lstrip())


def measure(model, primes: list[str], extra: dict) -> dict[str, float]:
    searched = {"greedy": [], "beam": []}
    for prime in primes:
        for mode, options in (("greedy", {"greedy": True}), ("beam", {"beam": 8})):
            text = model.sample(prime=prime, length=200, **options, **extra)[len(prime) :]
            searched[mode].append(text)
    drawn = [
        model.sample(prime=p, length=200, temperature=0.8, seed=s, **extra)[len(p) :]
        for p in primes
        for s in range(20)
    ]
    row = {}
    for mode, texts in searched.items():
        row[f"{mode} mostly blank"] = mean(map(mostly_blank, texts))
        row[f"{mode} blank run > 40"] = mean(bool(LONG_BLANK.search(t)) for t in texts)
    row["t=0.8 blank after prime"] = mean(map(leading_blank, drawn))
    row["t=0.8 mostly blank"] = mean(map(mostly_blank, drawn))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="append", required=True)
    args = parser.parse_args()
    print(f"machine: {machine()}\n")
    for path in args.checkpoint:
        model = charlstm.load(path)
        code = model.config.data.path == "python-stdlib" or "py" in str(model.config.data.include)
        primes = CODE_PRIMES if code else PROSE_PRIMES
        with mock.patch("charlstm.generate.context.prime_context", zero_state_context):
            # every module that imported it by name reads the reference's
            with mock.patch("charlstm.generate.sample.prime_context", zero_state_context), \
                 mock.patch("charlstm.generate.search.prime_context", zero_state_context), \
                 mock.patch("charlstm.generate.search.start_context",
                            lambda v, p, s: zero_state_context(v, p, s.unknown)):  # fmt: skip
                before = measure(model, primes, {"no_repeat_ngram": 0})
        after = measure(model, primes, {"no_repeat_ngram": 0})
        blocked = measure(model, primes, {})
        print(f"### {path} ({model.config.data.path})\n")
        print("| measure | before | line start alone | now (line start, beam's rule) |")
        print("| --- | ---: | ---: | ---: |")
        for key in before:
            cells = [before[key], after[key], blocked[key]]
            shown = [f"{v:.1f}" if "after prime" in key else f"{v:.0%}" for v in cells]
            print(f"| {key} | " + " | ".join(shown) + " |")
        print()


if __name__ == "__main__":
    main()
