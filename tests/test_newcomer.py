"""A newcomer's first hour, replayed: `make demo`'s commands, then README's quick tour in
its order, on a text, a folder of notes and code and a list of names of the newcomer's
own, each command exiting 0 with what the docs say it prints. Budgets are shortened the
way a user would shorten them (`--time`, `--set`); nothing else is changed."""

from __future__ import annotations

import os
import re
import shlex
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm.cli import app
from tests.conftest import make_text

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = [
    os.environ.get("CHARLSTM_SHAKESPEARE"),
    str(ROOT / "data" / "tinyshakespeare.txt"),
    str(ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"),
]

pytestmark = pytest.mark.slow  # a minute of commands: in `make test`

# Long-running servers, tested on their own (tests/test_serve.py, TensorBoard's own).
SERVERS = ("tensorboard", "charlstm serve")


def commands_of_demo() -> list[str]:
    """The charlstm lines of the Makefile's demo target."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    return [line.strip().replace("$(BIN)/", "") for line in recipe.splitlines()]


def commands_of_tour() -> list[str]:
    """The commands of README's quick tour, in order, comments dropped."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    tour = readme.split("## Quick tour", 1)[1]
    block = re.search(r"```bash\n(.*?)```", tour, re.S).group(1)
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("source ")]


def shortened(command: str) -> str:
    """The command with a test's budgets: seconds for minutes, steps for a config's."""
    command = re.sub(r"--time \S+", "--time 4s", command)
    command = command.replace("configs/", f"{ROOT}/configs/")
    if "configs/python-code.yaml" in command:  # the demo: one package of the library
        command += ' --set data.include=["json/*.py"] --set train.max_seconds=5'
    if "configs/tiny.yaml" in command and "train" in command:
        command += " --set train.max_steps=20"
    if "--resume runs/python-code" in command:
        command = command.replace("train.max_seconds=600", "train.max_seconds=8")
    if command.startswith("charlstm tune"):
        command += " --time 16s --trial-time 8s --trials 1 --set train.eval_every=5"
    if command.startswith("charlstm sample") and "--length" not in command:
        command += " --length 120"
    return command


def write_the_newcomers_own(folder: Path) -> None:
    (folder / "my_notes.txt").write_text(make_text(lines=600), encoding="utf-8")
    project = folder / "my_project"
    (project / "notes").mkdir(parents=True)
    (project / "notes" / "ideas.md").write_text(make_text(lines=200, seed=1), encoding="utf-8")
    (project / "tool.py").write_text(
        "def add(a, b):\n    return a + b\n\n\nclass Counter:\n    def __init__(self):\n"
        "        self.n = 0\n" * 40,
        encoding="utf-8",
    )
    (project / ".gitignore").write_text("build/\n", encoding="utf-8")
    (project / "build").mkdir()
    (project / "build" / "out.txt").write_text("not read\n" * 1000, encoding="utf-8")
    syllables = ["ka", "ri", "mo", "na", "lu", "te", "sa", "vi", "do", "re", "an", "el"]
    names = sorted({a + b + c for a in syllables for b in syllables for c in syllables[:6]})
    (folder / "names.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    (folder / "some_module.py").write_text((ROOT / "charlstm" / "rundir.py").read_text())


# What the docs say each command prints (a piece of its output).
EXPECTED = {
    "train my_notes.txt": "auto: ",
    "train my_project/": "auto: ",
    "train names.txt": "names.txt reads as a list",
    "--documents 10": "document(s) drawn",
    "--split val": "nats/char",
    "--words 5": "next words after",
    "--version": "charlstm ",
    "charlstm train --resume": "changed on resume: train.max_seconds",
}


def test_the_newcomers_first_hour(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_the_newcomers_own(tmp_path)
    shakespeare = next((p for p in SHAKESPEARE if p and Path(p).is_file()), None)
    runner = CliRunner()
    ran, left_out = [], []
    for command in commands_of_demo() + commands_of_tour():
        if command.startswith(SERVERS):
            continue
        if command == "make get-data" or command.startswith("charlstm tune"):
            if shakespeare is None:
                left_out.append(command)  # no copy here and no download in tests
                continue
            if command == "make get-data":
                Path("data").mkdir(exist_ok=True)
                os.symlink(shakespeare, "data/tinyshakespeare.txt")
                ran.append(command)
                continue
        args = shlex.split(shortened(command))
        assert args[0] == "charlstm", command
        started = time.perf_counter()
        result = runner.invoke(app, args[1:])
        print(f"{time.perf_counter() - started:6.1f} s  {command}")
        assert result.exit_code == 0, f"{command}\n{result.output}"
        for piece, said in EXPECTED.items():
            if piece in command:
                assert said in result.output, f"{command}\n{result.output}"
        ran.append(command)
    # every run the tour made is where the docs say, the list trained as documents
    for run in ("python-code", "my_notes", "my_project", "names", "tiny"):
        assert (tmp_path / "runs" / run / "checkpoints" / "best.pt").is_file(), run
    assert "documents: lines" in (tmp_path / "runs" / "names" / "config.yaml").read_text()
    assert Path("report.html").is_file() and Path("python-code.html").is_file()
    assert len(ran) + len(left_out) >= 18 and len(left_out) <= 2, (ran, left_out)
