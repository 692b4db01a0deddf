"""Patterns made into automata at a cost bounded before and while the work is done.

A regex becomes a deterministic automaton through interegular, and several patterns one
automaton through their product; both can blow up. `(a|b)*a(a|b){13}` needs 2**14
states, twelve `--contains` words the product of twelve small automata (millions of
states), and a 20 KB regex a long crawl. Left alone, one 250-byte request froze the
server for minutes. So:

- a pattern's text is bounded (MAX_PATTERN_CHARS) before it is parsed;
- every automaton interegular builds is crawled by `_bounded_crawl` below (interegular's
  own `crawl`, looked up by name on each construction, is replaced by it): it counts the
  states made during one build against MAX_BUILD_STATES, keeps to BUILD_SECONDS, and
  honours a stop request (Ctrl-C, SIGTERM, a server client that went away) every few
  hundred states. interegular's crawl also finds a state's number by a list search (the
  build quadratic in states); here a dict does it;
- the finished automaton may have at most MAX_STATES states;
- built automata are cached by pattern and alphabet: a server asked the same pattern
  again builds nothing.
Past a bound, one line says the pattern is too complex (the CLI's exit 1, the server's
400), and nothing else waits for it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from charlstm import interrupt
from charlstm.errors import CharlstmError

MAX_PATTERN_CHARS = 4_096  # all patterns of one request together
MAX_STATES = 10_000  # of the finished automaton (its tables are this many rows)
MAX_BUILD_STATES = 50_000  # made during one build, intermediate automata included
BUILD_SECONDS = 3.0
CHECK_EVERY = 256  # states between two looks at the clock and at stop requests
CACHED = 64  # automata kept

_limits = threading.local()  # .build: the _Budget of the build this thread is doing


class TooComplex(CharlstmError):
    """A pattern whose automaton would pass the bounds."""


def _bounded_crawl(alphabet, initial, final, follow):
    """interegular.fsm.crawl, with a dict for the state index and the bounds above."""
    from interegular.fsm import FSM, OblivionError

    budget = getattr(_limits, "build", None)
    states, index, finals, transitions = [initial], {_hashable(initial): 0}, set(), {}
    i = 0
    while i < len(states):
        state = states[i]
        if final(state):
            finals.add(i)
        transitions[i] = {}
        for symbol in alphabet.by_transition:
            try:
                target = follow(state, symbol)
            except OblivionError:  # the dead state: not listed
                continue
            key = _hashable(target)
            j = index.get(key)
            if j is None:
                j = index[key] = len(states)
                states.append(target)
                if budget is not None:
                    budget.spend()
            transitions[i][symbol] = j
        i += 1
    return FSM(alphabet=alphabet, states=range(len(states)), initial=0, finals=finals,
               map=transitions, __no_validation__=True)  # fmt: skip


def _hashable(state):
    """A key equal where the states are equal (interegular's states may hold sets)."""
    try:
        hash(state)
        return state
    except TypeError:
        if isinstance(state, (set, frozenset)):
            return frozenset(map(_hashable, state))
        if isinstance(state, (list, tuple)):
            return tuple(map(_hashable, state))
        if isinstance(state, dict):
            return frozenset((k, _hashable(v)) for k, v in state.items())
        raise


class _Budget:
    def __init__(self, what: str):
        self.what = what
        self.left = MAX_BUILD_STATES
        self.deadline = time.monotonic() + BUILD_SECONDS

    def spend(self) -> None:
        self.left -= 1
        if self.left % CHECK_EVERY:
            return
        interrupt.check(f"building the automaton of {self.what}")
        if self.left <= 0 or time.monotonic() > self.deadline:
            raise TooComplex(
                f"{self.what} is too complex to follow (more than {MAX_BUILD_STATES:,} "
                f"automaton states or {BUILD_SECONDS:g} s to build them); simplify it or "
                "use fewer --contains words"
            )


def _install() -> None:
    import interegular.fsm

    if interegular.fsm.crawl is not _bounded_crawl:
        interegular.fsm.crawl = _bounded_crawl


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def build_automaton(patterns: list[tuple[str, str]], alphabet: tuple[str, ...], table: Callable):
    """`table(fsm)` of the product of the patterns' automata (each (pattern, what)),
    built within the bounds or refused in one line; cached by patterns and alphabet."""
    key = (tuple(patterns), alphabet)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    what = ", ".join(w for _, w in patterns)
    if sum(len(p) for p, _ in patterns) > MAX_PATTERN_CHARS:
        raise TooComplex(f"{what}: the patterns have at most {MAX_PATTERN_CHARS:,} characters")
    try:
        import interegular
    except ImportError:
        raise CharlstmError(f"{what} needs interegular: pip install interegular") from None
    _install()
    _limits.build = _Budget(what)
    try:
        fsm = None
        for pattern, one in patterns:
            made = _parse(interegular, pattern, one)
            fsm = made if fsm is None else fsm & made
        if len(fsm.states) > MAX_STATES:
            raise TooComplex(
                f"{what} is too complex to follow ({len(fsm.states):,} automaton states, at "
                f"most {MAX_STATES:,})"
            )
        built = table(fsm)
    finally:
        _limits.build = None
    with _cache_lock:
        _cache[key] = built
        while len(_cache) > CACHED:
            _cache.popitem(last=False)
    return built


def _parse(interegular, pattern: str, what: str):
    try:
        return interegular.parse_pattern(f"(?s:{pattern})").to_fsm()
    except (CharlstmError, interrupt.Interrupted):
        raise
    except RecursionError:
        raise TooComplex(f"{what} is nested too deeply to follow") from None
    except Exception as err:  # interegular's own errors name no common base
        reason = str(err) or type(err).__name__
        raise CharlstmError(f"{what} is not a pattern charlstm can follow ({reason})") from None
