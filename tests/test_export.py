"""`charlstm export`: one self-contained page whose own forward pass writes, in headless
Chromium, the text `charlstm sample --greedy` writes."""

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.training.trainer import Trainer
from tests.conftest import HOSTILE, quiet_console, small_config

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Headless Chromium driven by Playwright, as in CI's container.
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium)"
)


def export(run: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(app, ["export", "-c", str(run), "--out", str(out), *extra])
    assert result.exit_code == 0, result.output


def greedy_cli(run: Path, prime: str, length: int) -> str:
    result = CliRunner().invoke(app, ["sample", "-c", str(run), "--greedy", "--prime", prime,
                                      "--length", str(length)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output[:-1]


def page_text(page: Path, fragment: str, tmp_path: Path) -> str:
    """What the page writes into #output, read from the DOM after it loaded."""
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update",
         f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", f"{page.as_uri()}#{fragment}"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    found = re.search(r'<pre id="output">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return html.unescape(found.group(1))


@pytest.fixture(scope="module", params=["gru", "rnn", "peephole"])
def other_cell_run(
    request,
    tmp_path_factory,
):
    root = tmp_path_factory.mktemp(request.param)
    corpus = root / "corpus.txt"
    from tests.conftest import make_text

    corpus.write_text(make_text(), encoding="utf-8")
    cfg = small_config(corpus, root / "run", f"model.cell={request.param}",
                       "train.max_steps=60", "train.eval_every=60")  # fmt: skip
    Trainer(cfg, console=quiet_console(root / "log"), quiet=True).run()
    return root / "run"


def test_the_page_is_one_file_with_its_weights_and_script(trained_run, tmp_path):
    export(trained_run, tmp_path / "m.html")
    page = (tmp_path / "m.html").read_text()
    assert '<script id="model" type="application/json">' in page
    assert "src=" not in page and "http" not in page.split("<body>")[1]  # nothing fetched
    assert '"precision":"fp16"' in page
    half, full = (tmp_path / "m.html").stat().st_size, None
    export(trained_run, tmp_path / "f.html", "--precision", "fp32")
    full = (tmp_path / "f.html").stat().st_size
    assert half < full


def test_a_bad_precision_is_one_line(trained_run, tmp_path):
    result = CliRunner().invoke(app, ["export", "-c", str(trained_run), "--out",
                                      str(tmp_path / "m.html"), "--precision", "int8"])  # fmt: skip
    assert result.exit_code == 1 and "--precision must be fp16 or fp32" in result.output
    assert not (tmp_path / "m.html").exists()


@needs_chromium
def test_fp32_page_writes_what_sample_greedy_writes(trained_run, tmp_path):
    export(trained_run, tmp_path / "m.html", "--precision", "fp32")
    expected = greedy_cli(trained_run, "the dog ", 300)
    got = page_text(tmp_path / "m.html", "prime=the%20dog%20&length=300&greedy=1&autorun=1",
                    tmp_path)  # fmt: skip
    assert got == expected and len(got) == 308


@needs_chromium
def test_fp16_page_agrees_at_first(trained_run, tmp_path):
    export(trained_run, tmp_path / "m.html")
    expected = greedy_cli(trained_run, "a cat ", 50)
    got = page_text(tmp_path / "m.html", "prime=a%20cat%20&length=50&greedy=1&autorun=1",
                    tmp_path)  # fmt: skip
    assert got == expected


@needs_chromium
def test_every_cell_runs_in_the_page(other_cell_run, tmp_path):
    export(other_cell_run, tmp_path / "m.html", "--precision", "fp32")
    expected = greedy_cli(other_cell_run, "the ", 200)
    got = page_text(tmp_path / "m.html", "prime=the%20&length=200&greedy=1&autorun=1", tmp_path)
    assert got == expected


@needs_chromium
def test_sampling_in_the_page_is_seeded_and_can_start_without_a_prime(trained_run, tmp_path):
    export(trained_run, tmp_path / "m.html")
    fragment = "length=120&temperature=0.9&top-k=5&seed=7&autorun=1"
    first = page_text(tmp_path / "m.html", fragment, tmp_path)
    again = page_text(tmp_path / "m.html", fragment, tmp_path)
    other = page_text(tmp_path / "m.html", fragment.replace("seed=7", "seed=8"), tmp_path)
    assert first == again and first != other and len(first) == 120


def test_a_hostile_title_and_vocabulary_stay_inert_in_the_page(hostile_run, tmp_path):
    """A title holding the old placeholders and a closing tag, and a vocabulary that
    holds </script>: the page has the same tags as with a plain title, the title is
    text, and the page reads its model."""
    import json

    import markupsafe

    export(hostile_run, tmp_path / "plain.html", "--title", "plain")
    export(hostile_run, tmp_path / "page.html", "--title", HOSTILE)
    plain = (tmp_path / "plain.html").read_text(encoding="utf-8")
    page = (tmp_path / "page.html").read_text(encoding="utf-8")
    for tag in ("<script", "</script>", "<title>", "</title>", "<b>", "<!--"):
        assert page.lower().count(tag) == plain.lower().count(tag), tag
    assert f"<title>{markupsafe.escape(HOSTILE)}</title>" in page
    model = page.split('<script id="model" type="application/json">')[1].split("</script>")[0]
    assert set(HOSTILE) <= {chr(c) for c in json.loads(model)["vocab"]}
    assert len(page) - len(plain) < 2 * len(HOSTILE) * 6  # the title, escaped, twice
