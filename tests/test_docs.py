"""The documentation site: it builds in strict mode (no broken link, no page left out),
and each command's page names every option its --help shows."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from charlstm.cli import app
from tests.test_export import CHROMIUM, FLAGS

try:
    import playwright.sync_api as playwright
except ImportError:  # the site is still built and checked; the clicks need the dev extra
    playwright = None

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = DOCS / "pages"

# Each command and the page that documents it.
PAGE_OF = {
    "train": "training.md",
    "info": "training.md",
    "tune": "autopilot.md",
    "sample": "sampling.md",
    "suggest": "sampling.md",
    "eval": "evaluation.md",
    "inspect": "inspect.md",
    "probe": "inspect.md",
    "tasks generate": "inspect.md",
    "export": "export.md",
    "serve": "serve.md",
}


def commands() -> dict:
    root = typer.main.get_command(app)
    found = {}
    for name, command in root.commands.items():
        if hasattr(command, "commands"):  # a group: its commands by their full name
            for sub, inner in command.commands.items():
                found[f"{name} {sub}"] = inner
        else:
            found[name] = command
    return found


def test_every_command_has_a_page():
    assert sorted(commands()) == sorted(PAGE_OF)


@pytest.mark.parametrize("name", sorted(PAGE_OF))
def test_a_command_page_names_every_option(name):
    page = (PAGES / PAGE_OF[name]).read_text(encoding="utf-8")
    options = [opt for p in commands()[name].params for opt in p.opts if opt.startswith("--")]
    missing = [
        opt for opt in options
        if opt != "--help" and not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", page)
    ]  # fmt: skip
    assert not missing, f"{PAGE_OF[name]} does not mention {missing} of charlstm {name}"


def test_the_site_builds_strictly(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("needs MkDocs (the dev extra: pip install -e '.[dev]')")
    proc = subprocess.run(
        [mkdocs, "build", "--strict", "-f", str(DOCS / "mkdocs.yml"), "-d", str(tmp_path)],
        capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # One file a page (training.html, not training/index.html): links work from disk.
    built = {p.relative_to(tmp_path).as_posix() for p in tmp_path.glob("*.html")}
    assert {f"{page.stem}.html" for page in PAGES.glob("*.md")} <= built
    if CHROMIUM is not None and playwright is not None:
        _click_through_from_disk(tmp_path)


def _click_through_from_disk(site: Path) -> None:
    """Open the built index.html as a user does (file://), click each page of the
    navigation and find that page, not a directory listing."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto((site / "index.html").as_uri())
        for title in ("Training", "Sampling", "The code"):
            page.get_by_role("link", name=title, exact=True).first.click()
            page.wait_for_load_state()
            assert page.url.endswith(".html"), page.url
            assert page.locator("h1").first.inner_text().strip(), page.url
            assert "Index of" not in page.content()
        browser.close()


def test_readme_links_to_every_page():
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    for page in PAGES.glob("*.md"):
        if page.stem != "index":
            assert f"(docs/pages/{page.name})" in readme, page.name
