"""The command line, through Typer's CliRunner (and `python -m charlstm` for the parser)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm.cli import app

ROOT = Path(__file__).parent.parent
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_train_tiny_writes_checkpoints_and_events(tmp_path):
    out = tmp_path / "tiny"
    result = invoke(
        "train",
        "--config",
        ROOT / "configs/tiny.yaml",
        "--set",
        f"train.out_dir={out}",
        "--set",
        "train.max_steps=20",
        "--set",
        "train.eval_every=10",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert (out / "checkpoints/best.pt").is_file() and (out / "checkpoints/last.pt").is_file()
    assert list(out.glob("events.out.tfevents.*"))
    assert (
        "step 20: val loss" in result.output
        and f"sample with: charlstm sample --checkpoint {out}" in result.output
    )


def test_sample_eval_info(trained_run, tmp_path):
    result = invoke(
        "sample",
        "-c",
        trained_run,
        "--prime",
        "the dog",
        "--length",
        40,
        "--seed",
        1,
        "--output",
        tmp_path / "s.txt",
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("the dog") and len(result.output.strip()) >= 40
    assert (tmp_path / "s.txt").read_text().strip() == result.output.strip()

    many = invoke("sample", "-c", trained_run, "--num-samples", 3, "--length", 20, "--seed", 1)
    assert many.exit_code == 0 and many.output.count("-" * 40) == 2

    result = invoke("eval", "-c", trained_run, "--split", "val", "--json")
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.output)
    assert set(numbers) == {"loss", "bpc", "perplexity", "chars", "chars_per_sec"}
    assert numbers["bpc"] < 3

    result = invoke("eval", "-c", trained_run, "--text", trained_run.parent / "corpus.txt")
    assert result.exit_code == 0 and "bpc" in result.output and "characters scored" in result.output

    result = invoke("info", "-c", trained_run)
    assert result.exit_code == 0
    assert (
        "step: 300" in result.output
        and "hidden_size: 64" in result.output
        and "parameters:" in result.output
    )


def test_bad_config_inputs_are_one_line_errors(tmp_path):
    assert_one_line_error(
        invoke("train", "--config", tmp_path / "nope.yaml"), "config file not found"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [\n")
    assert_one_line_error(invoke("train", "--config", bad), "invalid YAML")
    assert_one_line_error(invoke("train", "--set", "train.lrr=1"), "did you mean 'train.lr'")
    assert_one_line_error(
        invoke("train", "--set", "model.hidden_size=0"), "model.hidden_size must be > 0"
    )
    assert_one_line_error(
        invoke("train", "--set", "train.batch_size=x"), "train.batch_size must be an integer"
    )


def test_bad_corpora_are_one_line_errors(tmp_path):
    def train(*sets):
        return invoke(
            "train",
            *[a for s in sets for a in ("--set", s)],
            "--set",
            f"train.out_dir={tmp_path / 'run'}",
            "--set",
            "train.device=cpu",
        )

    (tmp_path / "empty.txt").write_text("")
    assert_one_line_error(train(f"data.path={tmp_path / 'empty.txt'}"), "is empty")
    (tmp_path / "short.txt").write_text("too short for a batch\n" * 3)
    assert_one_line_error(train(f"data.path={tmp_path / 'short.txt'}"), "fewer than one window")
    (tmp_path / "d").mkdir()
    assert_one_line_error(
        train(f"data.path={tmp_path / 'd'}", "data.include=['*.py']"), "no files matching"
    )
    (tmp_path / "bin").write_bytes(b"\xff\xfe" * 1000)
    assert_one_line_error(
        train(f"data.path={tmp_path / 'bin'}"), "not valid UTF-8", "data.vocab=byte"
    )
    assert_one_line_error(train("data.path=/no/such/file.txt"), "data.path not found")


def test_unwritable_out_dir(tmp_path, corpus_file):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke(
        "train",
        "--set",
        f"data.path={corpus_file}",
        "--set",
        "train.batch_size=4",
        "--set",
        f"train.out_dir={blocker / 'run'}",
    )
    assert_one_line_error(result, "train.out_dir", "is not writable")


def test_bad_sample_options_are_one_line_errors(trained_run, tmp_path):
    c = ("-c", trained_run)
    assert_one_line_error(invoke("sample", *c, "--temperature", 0), "--temperature must be > 0")
    assert_one_line_error(invoke("sample", *c, "--top-p", 1.5), "--top-p must be in (0, 1]")
    assert_one_line_error(invoke("sample", *c, "--top-k", 0), "--top-k must be >= 1")
    assert_one_line_error(
        invoke("sample", *c, "--prime", "XYZ"), "not in the model's vocabulary", "'X'"
    )
    assert_one_line_error(invoke("sample", "-c", tmp_path / "missing.pt"), "checkpoint not found")
    ok = invoke("sample", *c, "--prime", "the X", "--unknown", "skip", "--length", 5)
    assert ok.exit_code == 0 and ok.output.startswith("the ")


@pytest.mark.parametrize("args", [["sample", "--length", "abc"], ["train", "--bogus"]])
def test_parser_errors_through_the_entry_point(args):
    proc = subprocess.run([sys.executable, "-m", "charlstm", *args], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "override, named",
    [
        ("model.hidden_size=0", "model.hidden_size must be > 0"),
        ("model.num_layers=0", "model.num_layers must be >= 1"),
        ("model.dropout=1.0", "model.dropout must be in [0, 1)"),
        ("train.bptt=0", "train.bptt must be >= 1"),
        ("train.batch_size=0", "train.batch_size must be >= 1"),
        ("data.val_fraction=1.5", "data.val_fraction must be in (0, 1)"),
        ("train.lr=0", "train.lr must be > 0"),
        ("model.cell=lstmm", "model.cell must be one of lstm, gru, rnn"),
    ],
)
def test_every_out_of_range_value_is_one_line_at_the_command_line(override, named):
    assert_one_line_error(invoke("train", "--set", override), named)


@pytest.mark.parametrize(
    "args, named",
    [
        (["eval", "--split", "val", "--streams", "0"], "--streams must be >= 1 (got 0)"),
        (["eval", "--split", "val", "--streams", "-3"], "--streams must be >= 1 (got -3)"),
        (["eval", "--split", "val", "--window", "0"], "--window must be >= 1 (got 0)"),
        (["eval", "--split", "val", "--window", "-1"], "--window must be >= 1 (got -1)"),
        (["eval", "--split", "test"], "--split must be 'val'"),
        (["eval", "--text", "no/such.txt"], "--text no/such.txt: no such file"),
        (["eval", "--task", "counter", "--count", "0"], "--count must be >= 1"),
        (["eval", "--task", "countr"], "unknown task 'countr'"),
        (["eval", "--split", "val", "--device", "gpu"], "--device must be auto, cpu, cuda"),
        (["eval", "--split", "val", "--device", "cuda:7"], "--device=cuda:7 but this machine"),
        (["sample", "--device", "cuda:x"], "--device must be auto, cpu, cuda, cuda:N or mps"),
        (["sample", "--device", "cuda:7"], "--device=cuda:7 but this machine has"),
        (["inspect", "--out", "r.html", "--prime", "the", "--top", "0"], "--top must be"),
        (["inspect", "--out", "r.pdf", "--prime", "the"], "--format must be html, npz, json"),
        (["inspect", "--out", "r.html", "--prime", "a", "--unknown", "drop"], "--unknown must"),
        (["inspect", "--out", "r.html", "--prime", "a", "--feature", "x=("], "not a regular"),
        (
            ["tasks", "generate", "counter", "--out", "t.txt", "--n-min", "5", "--n-max", "2"],
            "1 <= n-min <= n-max",
        ),  # fmt: skip
    ],
)
def test_every_option_is_checked_before_any_work(trained_run, tmp_path, monkeypatch, args, named):
    if args[0] in ("eval", "sample", "inspect"):
        args = [args[0], "-c", str(trained_run), *args[1:]]
    if "cuda:7" in args and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    monkeypatch.chdir(tmp_path)  # where the relative t.txt / r.html would be written
    result = runner.invoke(app, args)
    assert_one_line_error(result, named)
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a partial file


def test_resume_takes_a_run_folder_or_its_checkpoint_file(corpus_file, tmp_path):
    out = tmp_path / "run"
    base = [f"--set={s}" for s in small_config_sets(corpus_file, out, "train.max_steps=20")]
    assert invoke("train", "--quiet", *base).exit_code == 0
    resumed = invoke(
        "train", "--quiet", "--resume", out / "checkpoints" / "last.pt",
        "--set", "train.max_steps=30",
    )  # fmt: skip
    assert resumed.exit_code == 0, resumed.output
    assert "resuming at step 20" in resumed.output and "done: 30 steps" in resumed.output
    stray = tmp_path / "elsewhere.pt"
    stray.write_bytes((out / "checkpoints" / "last.pt").read_bytes())
    assert_one_line_error(
        invoke("train", "--resume", stray), "--resume takes a run folder", str(stray)
    )


def small_config_sets(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.path={corpus}", f"train.out_dir={out}", "model.hidden_size=32",
        "model.embedding_dim=16", "train.batch_size=8", "train.bptt=32", "train.device=cpu",
        "train.eval_every=10", "train.checkpoint_every=10", "log.sample_length=20", *extra,
    ]  # fmt: skip


def test_a_sample_prime_outside_the_corpus_is_refused_before_training(corpus_file, tmp_path):
    out = tmp_path / "run"
    sets = small_config_sets(corpus_file, out, "log.sample_prime=Ωmega")
    result = invoke("train", "--quiet", *[f"--set={s}" for s in sets])
    assert_one_line_error(result, "log.sample_prime has 1 character(s) the corpus lacks", "'Ω'")
    assert not (out / "checkpoints").exists()


def test_sample_into_a_closed_pipe_ends_quietly(trained_run):
    cmd = f"{sys.executable} -m charlstm sample -c {trained_run} --length 200000 | head -c 20"
    proc = subprocess.run(
        ["bash", "-c", cmd + "; echo; echo ${PIPESTATUS[0]}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[-1] in ("0", "141")  # no error status of our own


def test_sample_and_eval_do_not_import_training_or_tensorboard(trained_run):
    code = (
        "import sys\nfrom charlstm.cli import main\nsys.argv = ['charlstm', 'eval', '-c', "
        f"{str(trained_run)!r}, '--split', 'val', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.startswith('charlstm.training') or 'tensorboard' in m))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr


@pytest.mark.parametrize("command", ["sample", "inspect", "export", "tasks"])
def test_a_file_to_write_in_a_missing_folder_is_refused_before_work(trained_run, command):
    where = "no/such/folder/out.html"
    args = {
        "sample": ["sample", "-c", str(trained_run), "--output", where],
        "inspect": ["inspect", "-c", str(trained_run), "--prime", "the", "--out", where],
        "export": ["export", "-c", str(trained_run), "--out", where],
        "tasks": ["tasks", "generate", "counter", "--out", where],
    }[command]
    assert_one_line_error(runner.invoke(app, args), f"{where}: no folder no/such/folder")


def test_two_corpora_with_one_file_name_get_their_own_run_folders(tmp_path, monkeypatch):
    from charlstm.rundir import RunDir

    monkeypatch.chdir(tmp_path)
    mine, theirs = Path("a/notes.txt"), Path("b/notes.txt")
    for path in (mine, theirs):
        path.parent.mkdir()
        path.write_text("text\n")
    assert RunDir.for_corpus(mine).root == Path("runs/notes")
    held = Path("runs/notes/checkpoints")
    held.mkdir(parents=True)
    (held / "last.pt").write_bytes(b"")
    Path("runs/notes/config.yaml").write_text("data:\n  path: a/notes.txt\n")
    assert RunDir.for_corpus(mine).root == Path("runs/notes")  # its own run: resume advice
    assert RunDir.for_corpus(theirs).root == Path("runs/notes-2")  # another corpus


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "no_such_notes.txt", "--time", "1m"], "corpus not found: no_such_notes.txt"),
        (["train"], "train what? give a corpus and a time"),
    ],
)
def test_train_says_what_is_missing_before_anything_else(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("runs/no_such_notes/checkpoints").mkdir(parents=True)  # a run of that name exists
    Path("runs/no_such_notes/checkpoints/last.pt").write_bytes(b"")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and message in result.output, result.output


@pytest.mark.parametrize("command", ["train", "tune"])
def test_a_missing_tiny_shakespeare_says_how_to_get_it_and_leaves_no_folder(
    command, tmp_path, monkeypatch
):
    if command == "tune":
        pytest.importorskip("optuna", reason="charlstm tune needs Optuna (the tune extra)")
    monkeypatch.chdir(tmp_path)
    config = Path(__file__).resolve().parent.parent / "configs" / "shakespeare-cpu.yaml"
    args = [command, "--config", str(config), "--set", "train.out_dir=runs/shk"]
    if command == "tune":
        args = [command, "--config", str(config), "--time", "4m", "--out", "runs/study"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "data.path not found: data/tinyshakespeare.txt (make get-data" in result.output
    assert not Path("runs").exists() or not any(Path("runs").iterdir())


def test_every_help_text_is_shown_as_written():
    """Help texts are plain text: `key: [choices]` is not swallowed as a markup tag."""
    import typer

    command = typer.main.get_command(app)
    checked = 0
    for name, sub in command.commands.items():
        shown = CliRunner().invoke(app, [name, "--help"], terminal_width=400).output
        shown = " ".join(shown.split())
        for param in sub.params:
            text = getattr(param, "help", None)  # options have help, arguments may not
            if text and "[" in text:
                assert " ".join(text.split()) in shown, (name, text)
                checked += 1
    assert checked >= 1  # tune's --space: "key: [choices]"


def test_a_corpus_named_like_a_yaml_word_is_still_a_file(tmp_path, monkeypatch):
    from charlstm.cli.train import newcomer_overrides
    from charlstm.config import Config

    monkeypatch.chdir(tmp_path)
    Path("null").write_text("text\n")
    overrides, _ = newcomer_overrides(Path("null"), "1m", None, None, [])
    assert Config.from_dict({}, overrides).data.path == "./null"
