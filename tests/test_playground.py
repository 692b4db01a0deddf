"""The playground of `charlstm serve`, in a real browser against a real server: it
loads, generates the text `charlstm sample` writes, tints each character, offers the
alternatives, and takes one and continues from it."""

from __future__ import annotations

import httpx
import pytest

from tests.test_export import CHROMIUM, FLAGS, needs_chromium
from tests.test_serve import Server, cli_sample

playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")
# A browser and a server each: seconds apiece, so in `make test`, not in `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(trained_run):
    s = Server(trained_run)
    yield s
    s.stop()


@pytest.fixture()
def page():
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser.new_page()
        browser.close()


def generated(page, times: int) -> str:
    page.wait_for_function(f"Number(document.body.dataset.generated || 0) >= {times}",
                           timeout=60_000)  # fmt: skip
    return page.evaluate("window.playground.fullText()")


@needs_chromium
def test_generate_then_take_an_alternative_and_continue(server, trained_run, page):
    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('lstm')")
    page.fill("#prompt", "the ")
    page.fill("#seed", "3")
    page.fill("#length", "40")
    page.click("#generate")
    text = generated(page, 1)
    assert text == "the " + cli_sample(trained_run, "the ", 40, 3, 0.8)  # the page's settings
    spans = page.locator("#text span.gen")
    assert spans.count() == 40
    odds = [float(p) for p in spans.evaluate_all("s => s.map(e => e.dataset.p)")]
    tints = spans.evaluate_all("s => s.map(e => getComputedStyle(e).backgroundColor)")
    assert all(0 < p <= 1 for p in odds)
    # each character tinted by its own probability: the likeliest and the least alike
    assert tints[odds.index(max(odds))] != tints[odds.index(min(odds))]
    assert page.locator("#words li").count() == 5  # next words, each with its odds
    spans.nth(5).hover()
    choices = page.locator("#tip button")
    assert page.locator("#tip").is_visible() and choices.count() == 5
    taken = choices.nth(1).get_attribute("data-char")
    choices.nth(1).click()
    again = generated(page, 2)
    start = "the " + text[4:9] + taken
    assert again.startswith(start) and len(again) == len(start) + 40
    assert page.input_value("#prompt") == start  # it continues from the text taken


@needs_chromium
def test_the_page_asks_for_the_key_and_then_uses_it(trained_run, page):
    s = Server(trained_run, "--api-key", "sesame")
    try:
        assert httpx.get(s.url + "/").status_code == 200  # the page: no data in it
        assert httpx.get(s.url + "/info").status_code == 401
        page.goto(s.url + "/")
        page.wait_for_selector("#key", state="visible")
        page.fill("#api-key", "sesame")
        page.click("#key-ok")
        page.wait_for_function("document.getElementById('model').textContent.includes('lstm')")
    finally:
        s.stop()


@needs_chromium
def test_sliding_a_held_unit_regenerates_the_text_steered(server, trained_run, page):
    import charlstm

    page.goto(server.url + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('lstm')")
    page.fill("#prompt", "the ")
    page.fill("#seed", "5")
    page.fill("#length", "60")
    page.fill("#steer-units", "1:3, 0:7")
    page.click("#generate")
    at_zero = generated(page, 1)
    model = charlstm.load(trained_run)
    assert at_zero == model.sample("the ", length=60, seed=5, clamp=["1:3=0", "0:7=0"])
    page.locator("#steer-value").fill("0.9")  # a slide: the text comes again, steered
    steered = generated(page, 2)
    assert steered == model.sample("the ", length=60, seed=5, clamp=["1:3=0.9", "0:7=0.9"])
    assert steered != at_zero and "steered (1:3=0.9, 0:7=0.9)" in page.inner_text("#status")
