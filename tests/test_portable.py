"""charlstm runs where PyTorch runs, Windows included: no command may depend on a module
or function that exists on Unix alone. Checked in the package's own source (its
dependencies may import such modules where they exist and do without elsewhere)."""

import ast
from pathlib import Path

import charlstm

UNIX_ONLY_MODULES = {"fcntl", "resource", "termios", "tty", "pty", "pwd", "grp", "posix"}
UNIX_ONLY_CALLS = {
    ("os", "pread"), ("os", "pwrite"), ("os", "fork"), ("os", "killpg"), ("os", "setsid"),
    ("os", "getuid"), ("os", "mkfifo"), ("os", "sched_getaffinity"),
    ("signal", "SIGPIPE"), ("signal", "SIGKILL"), ("signal", "SIGHUP"), ("signal", "SIGUSR1"),
}  # fmt: skip


def uses(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names} & UNIX_ONLY_MODULES
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module.split(".")[0]} & UNIX_ONLY_MODULES
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in UNIX_ONLY_CALLS:
                found.add(f"{node.value.id}.{node.attr}")
    return found


def test_no_unix_only_module_or_call_in_the_package():
    package = Path(charlstm.__file__).parent
    offenders = {
        str(path.relative_to(package)): sorted(found)
        for path in package.rglob("*.py")
        if (found := uses(ast.parse(path.read_text(encoding="utf-8"))))
    }
    assert offenders == {}


def test_the_check_sees_what_it_looks_for():
    assert uses(ast.parse("import fcntl\nos.pread(fd, 1, 0)\n")) == {"fcntl", "os.pread"}
