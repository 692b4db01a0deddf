"""The package's shape, held by the code itself: a flat core and one room per command
family, imports that only point down, modules and command functions a reader can take
in at once (see README's module map)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "charlstm"

# Lower layers never import higher ones (not even inside a function, nor for a type); a
# layer may import its own, without a cycle. A new module joins the layer of what it
# builds on.
LAYERS = [
    ["errors", "options", "config", "interrupt", "progress", "device", "memory", "templates"],
    ["data"],
    ["peephole", "model", "checkpoint", "rundir"],
    ["generate"],
    ["evaluate"],
    ["training", "inspect", "export"],
    ["api"],
    ["serve"],
    ["cli"],
    ["__init__", "__main__"],
]
LAYER = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# Modules allowed past MAX_MODULE_LINES, and why.
LONG_MODULES = {
    # one declaration per config key, each with its default, help and a comment on why
    "config.py": 600,
    # a list of short _setup_* methods and the labelled phases of the loop
    "training/trainer.py": 670,
    # every option of every command, each with its one default, help text and rule
    "options.py": 670,
    # a batch's whole life in one class: admit, warm, penalise, constrain, step, hand over
    "serve/engine.py": 470,
}
MAX_MODULE_LINES = 450
MAX_TOP_LEVEL_MODULES = 16
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    """Dotted name (without `charlstm.`) -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every charlstm module a file imports: at module level, inside functions and under
    `if TYPE_CHECKING:` alike (a lazy or a typing import is still a dependency)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if base == "charlstm" or base.startswith("charlstm."):
                base = base.removeprefix("charlstm").lstrip(".")
                for alias in node.names:
                    whole = f"{base}.{alias.name}".lstrip(".")
                    out.add(whole if whole in known else base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("charlstm."):
                    out.add(alias.name.removeprefix("charlstm."))
    return {name for name in out if name in known}


def layer_of(name: str) -> int:
    return LAYER[name.split(".")[0] if name else "__init__"]


def test_the_top_level_is_a_small_core():
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= MAX_TOP_LEVEL_MODULES, sorted(top)


def test_every_module_sits_in_a_layer():
    assert not [name for name in modules() if name.split(".")[0] not in LAYER]


def test_imports_only_point_down():
    known = modules()
    upward = []
    for name, path in known.items():
        for target in imports(path, known):
            if layer_of(target) > layer_of(name):
                upward.append(f"{name} imports {target}")
    assert not upward


def test_no_import_cycle():
    known = modules()
    graph = {name: imports(path, known) - {name} for name, path in known.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := walk(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = walk(start, [])
            assert cycle is None, " -> ".join(cycle)


def test_modules_are_short():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > LONG_MODULES.get(rel, MAX_MODULE_LINES):
            too_long.append(f"{rel}: {lines} lines")
    assert not too_long


# Functions allowed past MAX_FUNCTION_LINES: declaration lists only, and why.
LONG_FUNCTIONS = {
    # one (rule, message) pair per option of `charlstm sample`, read top to bottom
    "options.py SampleSettings.__post_init__",
}


def test_no_function_is_long():
    too_long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        owners = {child: node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                  for child in node.body}  # fmt: skip
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = ".".join(filter(None, [owners.get(node), node.name]))
                where = f"{path.relative_to(PACKAGE)} {name}"
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and where not in LONG_FUNCTIONS:
                    too_long.append(f"{where}: {lines} lines")
    assert not too_long
