"""charlstm inspect: recorded activations, text features, ranking, reports, the page."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charlstm.cli import app
from charlstm.config import ModelConfig
from charlstm.data.vocab import Vocab
from charlstm.errors import CharlstmError
from charlstm.inspect.activations import (
    CELL_QUANTITIES,
    Activations,
    rank_units,
    record,
    saturation,
)
from charlstm.inspect.features import builtin_features, regex_feature, strings_and_comments
from charlstm.model import CharRNN
from tests.conftest import HOSTILE

CODE = "def f(x):\n    s = \"a(b\"  # it's\n    if (x[0]):\n        return 'q\\''\n"


@pytest.mark.parametrize("cell", ["lstm", "peephole", "gru", "rnn"])
def test_recorded_values_match_the_network_for_every_cell(cell):
    torch.manual_seed(0)
    vocab = Vocab.from_code_points(map(ord, sorted(set(CODE))))
    model = CharRNN(
        vocab.size, ModelConfig(cell=cell, embedding_dim=8, hidden_size=12, num_layers=3)
    )
    with torch.no_grad():  # larger weights than the default, so the gates saturate too
        for weight in model.rnn.parameters():
            weight.mul_(3)
    acts = record(model, vocab, CODE)
    ids = torch.as_tensor(vocab.encode(CODE).astype(np.int64))[None]
    with torch.no_grad():
        out, state = model.rnn(model.embedding(ids))
    assert acts.shape == (len(CODE), 3, 12)
    assert tuple(acts.values) == CELL_QUANTITIES[cell]
    h_n = state[0] if isinstance(state, tuple) else state
    np.testing.assert_allclose(acts.values["h"][:, -1], out[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(acts.values["h"][-1], h_n[:, 0].numpy(), atol=1e-5)
    assert np.abs(acts.values["h"]).max() <= 1
    for gate in ("input", "forget", "output", "reset", "update"):
        if gate in acts.values:
            assert 0 <= acts.values[gate].min() and acts.values[gate].max() <= 1
    if "c" in acts.values:
        np.testing.assert_allclose(acts.values["c"][-1], state[1][:, 0].numpy(), atol=1e-5)
        assert np.abs(acts.values["c"]).max() > 1  # c is not squashed; h is
    # each gate's saturation: the fraction of steps below 0.1 and above 0.9, per unit
    gates = saturation(acts)
    assert set(gates) == {q for q in acts.values if q in ("input", "forget", "output", "reset",
                                                           "update")}  # fmt: skip
    for gate, fractions in gates.items():
        values = acts.values[gate]
        assert fractions["left"][1][3] == pytest.approx((values[:, 1, 3] < 0.1).mean(), abs=1e-4)
        assert fractions["right"][2][7] == pytest.approx((values[:, 2, 7] > 0.9).mean(), abs=1e-4)
    assert cell == "rnn" or any(max(max(f["right"])) > 0 for f in gates.values())


def test_text_features():
    strings, _ = strings_and_comments(CODE)
    inside = "".join(ch for ch, s in zip(CODE, strings, strict=True) if s)
    # the '(' in the string and the quote in the comment are not code; the escape is kept
    assert inside == "\"a(b\"'q\\''"
    features = builtin_features(CODE)
    depth = features["bracket depth"]
    assert depth[CODE.index("(x)")] == 1 and depth[CODE.index("x[0]") + 1] == 2
    assert depth[CODE.index('"a(b"') + 2] == 0  # inside the string
    assert features["indentation"][CODE.index("return")] == 8
    assert features["indentation"][CODE.index("def")] == 0
    assert features["position in line"][CODE.index("s =")] == 4
    assert features["after newline"].sum() == CODE.count("\n")  # each line's first char
    assert list(regex_feature("xaay", "a+")) == [0, 1, 1, 0]


def test_ranking_finds_the_unit_that_follows_a_feature():
    rng = np.random.default_rng(0)
    feature = builtin_features(CODE)["string literal"]
    values = {q: rng.normal(size=(len(CODE), 2, 16)).astype(np.float32) for q in ("h", "c")}
    values["c"][:, 1, 9] = np.tanh(3 * feature - 1) + 0.05 * rng.normal(size=len(CODE))
    acts = Activations(list(CODE), values, "lstm")
    ranking = rank_units(acts, {"string literal": feature, "flat": np.ones(len(CODE))}, top=3)
    best = ranking["string literal"][0]
    assert (best.quantity, best.layer, best.unit) == ("c", 1, 9) and best.r > 0.95
    assert len(ranking["string literal"]) == 3
    assert ranking["flat"] == []  # a constant feature ranks nothing


def test_inspect_cli_writes_each_format(trained_run, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat.\nthe dog ran.\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "inspect",
            "-c",
            str(trained_run),
            "--text",
            str(text),
            "--out",
            str(tmp_path / "r.html"),
            "--feature",
            "cat=cat|dog",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "cat:" in result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script>" in page and "http" not in page.replace("http-equiv", "")  # no network

    result = runner.invoke(
        app,
        [
            "inspect",
            "-c",
            str(trained_run),
            "--prime",
            "the cat.",
            "--out",
            str(tmp_path / "r.npz"),
        ],
    )
    assert result.exit_code == 0, result.output
    saved = np.load(tmp_path / "r.npz")
    assert saved["forget"].shape == (8, 2, 64) and "".join(saved["text"]) == "the cat."

    out = tmp_path / "r.json"
    result = runner.invoke(
        app, ["inspect", "-c", str(trained_run), "--prime", "a dog", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    raw = json.loads(out.read_text())
    assert raw["shape"] == {"time": 5, "layers": 2, "units": 64}
    assert len(raw["values"]["candidate"]) == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prime", "cat", "--text", "x.txt"], "exactly one of"),
        (["--prime", "cat", "--feature", "oops"], "name=REGEX"),
        (["--prime", "cat", "--feature", "b=(("], "not a regular expression"),
        (["--prime", "cat", "--format", "pdf"], "--format must be"),
        (["--prime", "cat\u00e9"], "not in the model's vocabulary"),
        (["--text", "/nonexistent/x.txt"], "cannot read"),
    ],
)
def test_inspect_mistakes_are_one_line(trained_run, tmp_path, args, message):
    result = CliRunner().invoke(
        app, ["inspect", "-c", str(trained_run), "--out", str(tmp_path / "r.html"), *args]
    )
    assert result.exit_code == 1
    assert message in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_inspect_reads_every_cell_and_its_report_offers_what_the_cell_has(cell, tmp_path):
    """The autopilot picks a GRU on most corpora: its run can be looked inside."""
    from conftest import make_text, quiet_console, small_config

    from charlstm.training.trainer import Trainer

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(make_text(60), encoding="utf-8")
    cfg = small_config(corpus, tmp_path / "run", "train.max_steps=5", f"model.cell={cell}")
    Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True).run()
    page = html_report(tmp_path / "run", tmp_path, "the cat sat on the mat\n" * 4,
                       "--find", "sat")  # fmt: skip
    shown = page.read_text(encoding="utf-8")
    wanted = list(CELL_QUANTITIES[cell])
    assert json.dumps(wanted, separators=(",", ":")) in shown or json.dumps(wanted) in shown
    # the gates' saturation scatters: one per gate the cell has
    assert ("<figcaption>reset gate</figcaption>" in shown) == (cell == "gru")
    assert ("<figcaption>update gate</figcaption>" in shown) == (cell == "gru")
    assert "Gate saturation" not in shown or cell == "gru"


# The page in a real browser ------------------------------------------------------------


def read_png(path: Path) -> np.ndarray:
    """Decode an 8-bit, non-interlaced RGB(A) PNG (what Chromium writes) to (h, w, 3)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    channels = 4 if colour == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * channels
    rows = np.zeros((height, stride), dtype=np.int32)
    previous = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            row = line
        elif kind == 2:
            row = (line + previous) & 255
        else:  # Sub, Average, Paeth depend on the left neighbour: byte by byte
            row = np.zeros(stride, dtype=np.int32)
            for x in range(stride):
                left = row[x - channels] if x >= channels else 0
                up = previous[x]
                if kind == 1:
                    pred = left
                elif kind == 3:
                    pred = (left + up) // 2
                else:
                    up_left = previous[x - channels] if x >= channels else 0
                    p = left + up - up_left
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                    pred = left if pa <= pb and pa <= pc else up if pb <= pc else up_left
                row[x] = (line[x] + pred) & 255
        rows[y] = previous = row
    return rows.reshape(height, width, channels)[:, :, :3]


def screenshot(page: Path, fragment: str, out: Path) -> np.ndarray:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=900,700",
            f"--screenshot={out}",
            f"{page.as_uri()}#{fragment}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return read_png(out)


needs_chromium = pytest.mark.skipif(
    not (shutil.which("chromium") or shutil.which("chromium-browser")),
    reason="needs Chromium (Debian: apt-get install chromium)",
)


def html_report(run: Path, tmp_path: Path, text: str, *extra: str) -> Path:
    """`charlstm inspect` of `text`, written as report.html under tmp_path."""
    page, source = tmp_path / "report.html", tmp_path / "text.txt"
    source.write_text(text)
    args = ["inspect", "-c", str(run), "--text", str(source), "--out", str(page), *extra]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return page


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
@needs_chromium
def test_page_renders_coloured_text_in_chromium(trained_run, tmp_path):
    text = "the big cat sat on the red mat.\nthen the dog ran under a log.\n" * 6
    page = html_report(trained_run, tmp_path, text)
    first = screenshot(page, "layer=1&unit=3&quantity=h", tmp_path / "a.png")
    second = screenshot(page, "layer=1&unit=40&quantity=h", tmp_path / "b.png")
    r, g, b = (first[:, :, i] for i in range(3))
    blue = (b - r > 60) & (b - g > 40)
    red = (r - b > 60) & (r - g > 40)
    assert blue.sum() + red.sum() > 2000, "no coloured character spans on the page"
    changed = np.abs(first - second).sum(axis=2) > 30
    assert changed.sum() > 1000, "another unit left the colours as they were"


def test_predictions_are_the_models_own_probabilities(trained_run):
    from charlstm.checkpoint import load_for_inference
    from charlstm.inspect.ablation import per_char_loss

    model, saved = load_for_inference(trained_run)

    vocab = saved.vocab
    text = "the cat sat on the mat.\nthe dog ran.\n"
    acts = record(model, vocab, text)
    assert acts.surprisal.shape == (len(text),)
    # from the second character on, the surprisal is the per-character loss of eval
    np.testing.assert_allclose(acts.surprisal[1:], per_char_loss(model, vocab.encode(text)),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    for row in acts.top:
        probabilities = [p for _, p in row]
        assert len(row) == 5 and probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) <= 1.0001
    # after "the ", a trained model expects the start of a noun it saw
    after_the = acts.top[text.index("the ") + 3]
    assert {ch for ch, _ in after_the} & set("cdmlb")


def test_find_lists_the_spans_where_the_same_units_are_on():
    from charlstm.inspect.match import find_like

    text = "ab[cd]ef gh[ij] k[lmn]op [q]"
    rng = np.random.default_rng(1)
    h = rng.uniform(-0.2, 0.2, size=(len(text), 2, 8)).astype(np.float32)
    inside = np.array([0 < sum(1 if c == "[" else -1 if c == "]" else 0 for c in text[: t + 1])
                       or ch == "]" for t, ch in enumerate(text)])  # fmt: skip
    h[inside, 1, 5] = 0.9  # the bracket unit
    h[inside, 0, 2] = 0.8  # and a second one
    h[: text.index("["), 0, 6] = 0.9  # on before the query: not selected
    values = {q: h for q in ("h", "c")}
    found = find_like(Activations(list(text), values, "lstm"), "[cd]")
    assert found.units == [(0, 2), (1, 5)] and found.start == 2
    assert [m.text for m in found.matches] == ["[lmn]", "[ij]", "[q]"]  # longest first
    assert found.matches[0].before.endswith(" k") and found.matches[0].after.startswith("op")
    with pytest.raises(CharlstmError, match="does not occur"):
        find_like(Activations(list(text), values, "lstm"), "zz")


def test_report_carries_predictions_ablation_and_matches(trained_run, tmp_path):
    import json

    text = tmp_path / "text.txt"
    text.write_text("the big cat sat on the red mat.\nthen the dog ran under a log.\n" * 4)
    args = ["inspect", "-c", str(trained_run), "--text", str(text)]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["surprisal"]) == len(report["text"]) == len(report["top"])
    assert all(len(row) == 5 for row in report["top"])
    for name, ranked in report["ranking"].items():
        if ranked:
            effect = report["ablation"][name]
            assert (effect["layer"], effect["unit"]) == (ranked[0]["layer"], ranked[0]["unit"])
            assert len(effect["delta"]) == len(report["text"])
    assert "ablated:" in result.output
    assert CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r.npz")]).exit_code == 0
    npz = np.load(tmp_path / "r.npz")
    assert npz["surprisal"].shape == (len(report["text"]),) and npz["top"].shape[1:] == (5, 2)


def test_the_page_lists_the_matches_as_clickable_rows():
    from charlstm.inspect.activations import QUANTITIES
    from charlstm.inspect.match import Found, Match
    from charlstm.inspect.report import html_page

    text = "ab[cd]ef[gh]"
    values = {q: np.zeros((len(text), 1, 4), dtype=np.float32) for q in QUANTITIES}
    top = [[("a", 0.5)] * 5 for _ in text]
    acts = Activations(list(text), values, "lstm", np.ones(len(text), np.float32), top)
    found = Found("[cd]", 2, [(0, 1)], [Match(8, 12, 1.0, "ef", "[gh]", "")])
    page = html_page(acts, {}, "t", {}, found)
    assert '<tr class="pick" data-start="8" data-end="12">' in page
    assert '<span class="hit">[gh]</span>' in page and "Units on across it" in page
    # a match's text is text: escaped, whatever it holds
    found = Found("</script>", 2, [(0, 1)], [Match(8, 12, 1.0, "<!--", "</script><b>", "'\"")])
    page = html_page(acts, {}, "t", {}, found)
    assert '<span class="hit">&lt;/script&gt;&lt;b&gt;</span>' in page
    assert "<h2>More like &#39;&lt;/script&gt;&#39;</h2>" in page
    assert page.count("</script>") == 1


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
@needs_chromium
def test_surprisal_view_colours_the_text_in_chromium(trained_run, tmp_path):
    text = "the big cat sat on the red mat.\nzzz the dog ran under a log.\n" * 6
    page = html_report(trained_run, tmp_path, text, "--unknown", "skip")
    surprisal = screenshot(page, "view=surprisal", tmp_path / "s.png")
    ablation = screenshot(page, "view=ablation&feature=after%20newline", tmp_path / "a.png")
    r, g, b = (surprisal[:, :, i] for i in range(3))
    assert ((r - b > 60) & (r - g > 40)).sum() > 1000, "no character coloured by surprisal"
    assert np.abs(surprisal - ablation).sum(axis=2).__gt__(30).sum() > 500


def test_hostile_file_names_features_and_text_stay_inert_in_the_page(hostile_run, tmp_path):
    """A file named after a placeholder, a feature named like a closing tag, and text
    that closes the script: each lands escaped where it belongs, and the page has the
    tags a plain one has."""
    import markupsafe

    def report(name: str, feature: str) -> str:
        text_file = tmp_path / name
        text_file.write_text(HOSTILE + "\nthe cat sat.\n", encoding="utf-8")
        out = tmp_path / f"{len(name)}.html"
        args = ["inspect", "-c", str(hostile_run), "--text", str(text_file), "--out",
                str(out), "--feature", f"{feature}=alert"]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        return out.read_text(encoding="utf-8")

    plain = report("plain.txt", "plain")
    hostile_name = "$DATA {{ title }} <b>x<!-- $SCRIPT.txt"
    page = report(hostile_name, "</script><b>")
    for tag in ("<script", "</script>", "<title>", "<b>", "<!--", "<tr"):
        assert page.lower().count(tag) == plain.lower().count(tag), tag
    assert f"<title>charlstm inspect: {markupsafe.escape(hostile_name)}, 2x16 lstm" in page
    assert "<td>&lt;/script&gt;&lt;b&gt;</td>" in page  # the feature's row
    data = json.loads(page.split("const DATA = ", 1)[1].split(";\n", 1)[0])
    assert "".join(data["chars"]) == HOSTILE + "\nthe cat sat.\n"
    assert page.count(data["values"]) == 1  # the payload once, not spliced into the title


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
def test_reach_says_how_far_back_the_model_remembers(trained_run, tmp_path):
    from conftest import make_text

    text = make_text(60)
    report = tmp_path / "reach.json"
    source = tmp_path / "text.txt"
    source.write_text(text)
    said = CliRunner().invoke(app, ["inspect", "-c", str(trained_run), "--text", str(source),
                                    "--out", str(report), "--reach"])  # fmt: skip
    assert said.exit_code == 0, said.output
    assert "reach at" in said.stdout and "with the whole state" in said.stdout
    reach = json.loads(report.read_text())["reach"]
    assert reach["distances"] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    loss, full = reach["loss"], reach["full_loss"]
    assert loss[0] > loss[-1] + 0.3  # one character of context is far worse than 256
    assert abs(loss[-1] - full) < 0.1  # a long window is about as good as the whole state
    gradient = reach["gradient"]
    assert len(gradient) == 256 and gradient[0] > 10 * gradient[-1] >= 0
    page = html_report(trained_run, tmp_path, text, "--reach")
    assert "How far back it remembers" in page.read_text(encoding="utf-8")


def test_reach_on_a_text_shorter_than_its_window_is_one_line(trained_run, tmp_path):
    source = tmp_path / "short.txt"
    source.write_text("the cat sat on the mat\n")
    said = CliRunner().invoke(app, ["inspect", "-c", str(trained_run), "--text", str(source),
                                    "--out", str(tmp_path / "r.html"), "--reach"])  # fmt: skip
    assert said.exit_code == 1 and "--reach needs a text longer than its longest window" in (
        said.stderr
    )
    assert len(said.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.html").exists()
