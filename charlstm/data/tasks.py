"""Synthetic languages from the "exploring LSTMs" experiments, one example per line.

Each example is a given part (up to and including its separator) and a determined part
that a model which has learned the rule can complete exactly:

    counter            aaaX|bbb        N a, X, then N b
    selective-counter  aaXaXaaY|bbbbb  N a with X scattered among them, Y, N b
    state              AxxxxY|a        A or B, 1-10 x, Y, the first letter in lowercase
    copy               baaX|baa        a string over {a, b, c}, X, the same string again

Examples come from a seeded generator, so a corpus is the same on every machine, and a
test set drawn with another seed (or another range of N) is fresh text.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from charlstm.errors import CharlstmError
from charlstm.options import TASK_N_MAX, TASK_N_MIN


@dataclass(frozen=True)
class Example:
    given: str  # what the model is primed with, separator included
    determined: str  # what a model that learned the rule must produce
    n: int  # the example's size (count, length or run of x)

    @property
    def line(self) -> str:
        return self.given + self.determined


def counter(rng: random.Random, n: int) -> Example:
    return Example("a" * n + "X", "b" * n, n)


def selective_counter(rng: random.Random, n: int) -> Example:
    letters = ["a"] * n + ["X"] * rng.randint(0, n)
    rng.shuffle(letters)
    if letters[0] == "X":  # keep the first symbol an `a`, so a line is never a bare Y
        first_a = letters.index("a")
        letters[0], letters[first_a] = letters[first_a], letters[0]
    return Example("".join(letters) + "Y", "b" * n, n)


def state(rng: random.Random, n: int) -> Example:
    first = rng.choice("AB")
    return Example(first + "x" * n + "Y", first.lower(), n)


def copy(rng: random.Random, n: int) -> Example:
    text = "".join(rng.choice("abc") for _ in range(n))
    return Example(text + "X", text, n)


TASKS: dict[str, Callable[[random.Random, int], Example]] = {
    "counter": counter,
    "selective-counter": selective_counter,
    "state": state,
    "copy": copy,
}
PREFIX = "task:"
# The range of N a task draws from unless told otherwise (training data, generate, eval).
N_MIN, N_MAX = TASK_N_MIN, TASK_N_MAX


def check_task_options(name: str, count: int, n_min: int, n_max: int) -> None:
    if name not in TASKS:
        raise CharlstmError(f"unknown task {name!r}: choose one of {', '.join(TASKS)}")
    if not 1 <= n_min <= n_max:
        raise CharlstmError(
            f"the range of N must satisfy 1 <= n-min <= n-max (got {n_min}..{n_max})"
        )
    if count < 1:
        raise CharlstmError(f"--count must be >= 1 (got {count})")


def examples(
    name: str, count: int, seed: int, n_min: int = N_MIN, n_max: int = N_MAX
) -> list[Example]:
    check_task_options(name, count, n_min, n_max)
    rng = random.Random(f"{name}/{seed}")
    return [TASKS[name](rng, rng.randint(n_min, n_max)) for _ in range(count)]


def corpus_text(name: str, count: int, seed: int, n_min: int = N_MIN, n_max: int = N_MAX) -> str:
    return "".join(e.line + "\n" for e in examples(name, count, seed, n_min, n_max))
