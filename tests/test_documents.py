"""Documents: a list of short texts trains as documents, and new ones come out whole."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import quiet_console, scalars
from typer.testing import CliRunner

import charlstm
from charlstm.checkpoint import load_checkpoint
from charlstm.cli import app
from charlstm.config import Config
from charlstm.data.corpus import load_corpus
from charlstm.data.documents import DocumentCutter, document_symbols
from charlstm.data.split import split_documents
from charlstm.data.vocab import END, Vocab
from charlstm.errors import CharlstmError, ConfigError, VocabError
from charlstm.generate.documents import make_documents
from charlstm.options import SampleSettings
from charlstm.training.trainer import Trainer
from tests.test_export import export, needs_chromium, page_text
from tests.test_serve import Server

# A tiny grammar of names: two to four syllables, each a consonant and a vowel.
NAME = re.compile(r"(?:[bdkm][aoi]){2,4}")


def grammar_names(count: int, seed: int = 0) -> list[str]:
    r = random.Random(seed)
    return [
        "".join(r.choice("bdkm") + r.choice("aoi") for _ in range(r.randint(2, 4)))
        for _ in range(count)
    ]


def documents_config(corpus: Path, out_dir: Path, *overrides: str) -> Config:
    base = [
        f"data.path={corpus}",
        "data.documents=lines",
        "data.val_fraction=0.1",
        "model.embedding_dim=16",
        "model.hidden_size=64",
        "model.num_layers=1",
        "train.batch_size=32",
        "train.bptt=16",
        "train.max_steps=300",
        "train.lr=1e-2",
        "train.warmup_steps=10",
        "train.eval_every=100",
        "train.checkpoint_every=100",
        "train.device=cpu",
        f"train.out_dir={out_dir}",
        "log.log_every=10",
    ]
    return Config.from_dict({}, base + list(overrides))


def train(cfg: Config, tmp_path: Path) -> Trainer:
    trainer = Trainer(cfg, console=quiet_console(tmp_path / "log.txt"), quiet=True)
    trainer.run()
    return trainer


@pytest.fixture(scope="module")
def names_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("names")
    corpus = root / "names.txt"
    corpus.write_text("\n".join(grammar_names(3000)) + "\n", encoding="utf-8")
    train(documents_config(corpus, root / "run", f"data.cache_dir={root / 'cache'}"), root)
    return root / "run"


@pytest.fixture(scope="module")
def labels_run(tmp_path_factory) -> Path:
    """Two labels, two alphabets: `up` names are made of ABC, `low` ones of xyz."""
    root = tmp_path_factory.mktemp("labels")
    r = random.Random(1)
    lines = []
    for _ in range(3000):
        label, letters = r.choice([("up", "ABC"), ("low", "xyz")])
        lines.append(label + "\t" + "".join(r.choice(letters) for _ in range(r.randint(3, 6))))
    corpus = root / "labelled.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = documents_config(
        corpus, root / "run", "data.label_separator=\\t", f"data.cache_dir={root / 'cache'}"
    )
    train(cfg, root)
    return root / "run"


def cli(*args: str) -> SimpleNamespace:
    """`charlstm ARGS` in this process (a new process costs seconds of imports): its exit
    code, stdout and stderr. An exception the command let escape fails the test, as a
    traceback would."""
    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout,
                           stderr=result.stderr)  # fmt: skip


# -- cutting a corpus into documents ----------------------------------------------------
def cut(mode: str, pieces: list[str], separator: str | None = None) -> list:
    cutter = DocumentCutter(mode, separator, byte_mode=False)
    out = []
    for piece in pieces:
        out += cutter.feed(piece)
    return out + cutter.finish()


def test_lines_and_paragraphs_are_cut_where_they_end_even_across_pieces():
    assert cut("lines", ["ab\n\ncd", "e\nf\0g"]) == [
        (None, "ab"),
        (None, "cde"),
        (None, "f"),
        (None, "g"),
    ]
    paragraphs = cut("paragraphs", ["one\nline two\n  \n", "\nnext\n", "\nthird\0", "file"])
    assert [t for _, t in paragraphs] == ["one\nline two", "next", "third", "file"]
    assert [t for _, t in cut("files", ["a\nb\0", "c"])] == ["a\nb", "c"]


def test_labels_are_split_from_their_documents_and_become_control_symbols():
    docs = cut("lines", ["x\tab\ny\tc", "d\nnolabel\n"], "\t")
    assert docs == [("x", "ab"), ("y", "cd")]
    symbols = document_symbols(docs, {"x": END + 1, "y": END + 2}.__getitem__)
    assert symbols.tolist() == [END + 1, 97, 98, END, END + 2, 99, 100, END]


def test_a_corpus_of_lines_reads_as_documents_with_a_reserved_end_id(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("ab\n\ncd\r\nab\n", encoding="utf-8")
    cfg = Config.from_dict({}, [f"data.path={path}", "data.documents=lines", "data.newlines=lf"])
    corpus = load_corpus(cfg.data)
    vocab = corpus.vocab
    assert vocab.documents and vocab.decode([vocab.end_id]) == ""
    assert set(vocab.decode(range(vocab.size))) == set("abcd")  # the end is no character
    end = vocab.end_id
    assert corpus.ids.tolist() == [end, 0, 1, end, 2, 3, end, 0, 1, end]
    assert Vocab.from_dict(vocab.to_dict()) == vocab


def test_records_with_a_label_field_are_labelled_documents(tmp_path):
    path = tmp_path / "tweets.jsonl"
    rows = [
        {"text": "hi\nthere", "kind": "a"},
        {"text": "yo", "kind": "b"},
        {"text": "x\0y", "kind": "a"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = Config.from_dict(
        {}, [f"data.path={path}", "data.documents=records", "data.label_field=kind"]
    )
    corpus = load_corpus(cfg.data)
    vocab = corpus.vocab
    assert vocab.labels == ("a", "b")
    split = split_documents(corpus.ids, vocab, cfg.data)
    docs = [split.span(k).tolist() for k in range(len(split.starts))]
    assert [vocab.decode(d) for d in docs] == ["hi\nthere", "yo", "xy"]  # NUL is no text
    assert [vocab.label_of(d[1]) for d in docs] == ["a", "b", "a"]


def test_byte_mode_documents_end_with_an_id_past_the_bytes(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("é\nab\n", encoding="utf-8")
    corpus = load_corpus(Config.from_dict({}, [f"data.path={path}", "data.documents=lines",
                                               "data.vocab=byte"]).data)  # fmt: skip
    assert corpus.vocab.size == 257 and corpus.vocab.end_id == 256
    assert corpus.ids.tolist() == [256, 0xC3, 0xA9, 256, 97, 98, 256]


def test_the_held_out_split_is_whole_documents_drawn_at_random(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text("".join(f"w{i:04d}\n" for i in range(2000)), encoding="utf-8")
    cfg = Config.from_dict(
        {}, [f"data.path={path}", "data.documents=lines", "data.val_max_documents=150"]
    )
    corpus = load_corpus(cfg.data)
    split = split_documents(corpus.ids, corpus.vocab, cfg.data)
    assert len(split.val) == 100  # 5% of 2,000, under the cap
    assert not set(split.val) & set(split.train) and len(split.train) == 1900
    assert split.val.max() - split.val.min() > 1500  # spread over the list, not its tail
    held = split.texts(corpus.vocab, split.val)
    assert all(re.fullmatch(r"w\d{4}", t) for t in held)
    keys = [f"data.path={path}", "data.documents=lines", "data.val_max_documents=150"]
    capped = Config.from_dict({}, [*keys, "data.val_fraction=0.5"])
    assert len(split_documents(corpus.ids, corpus.vocab, capped.data).val) == 150


def test_document_settings_that_cannot_work_are_one_line(tmp_path):
    with pytest.raises(
        ConfigError, match="data.label_field must be used with data.documents=records"
    ):
        Config.from_dict({}, ["data.documents=lines", "data.label_field=kind"])
    with pytest.raises(ConfigError, match="data.label_separator must be unset unless"):
        Config.from_dict({}, ["data.label_separator=:"])


# -- training ---------------------------------------------------------------------------
def test_fresh_documents_start_each_row_from_zero_and_carry_within_a_document(tmp_path):
    """A document longer than bptt continues from the state its row ended in; a row
    that begins a document starts from zero."""
    path = tmp_path / "mixed.txt"
    r = random.Random(0)
    lines = ["".join(r.choice("abc") for _ in range(r.randint(2, 40))) for _ in range(400)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = documents_config(path, tmp_path / "run", "train.bptt=8", "train.batch_size=4")
    trainer = Trainer(cfg, console=quiet_console(tmp_path / "log"), quiet=True)
    given, returned = [], []
    forward = trainer.net.forward

    def watch(inputs, state):
        given.append([s.clone() for s in state])
        logits, new = forward(inputs, state)
        returned.append([s.detach().clone() for s in new])
        return logits, new

    trainer.net.forward = watch
    windows = [trainer.data.batches.window(k) for k in range(12)]
    for _ in range(12):
        trainer.train_step()
    carried = fresh = 0
    for k in range(1, 12):
        for row, starts in enumerate(windows[k].fresh_rows.tolist()):
            if starts:
                assert all(float(s[:, row].abs().sum()) == 0 for s in given[k])
                fresh += 1
            else:
                assert all(torch.equal(a[:, row], b[:, row]) for a, b in
                           zip(given[k], returned[k - 1], strict=True))  # fmt: skip
                carried += 1
    assert fresh and carried


def test_a_names_grammar_is_learnt_and_new_documents_come_out_whole(names_run):
    model = charlstm.load(names_run)
    assert model.best_val_loss < 1.3  # chance: ln 4 or ln 3 per character, and the end
    made = model.sample_documents(200, seed=0, temperature=0.7)
    assert len(made) == 200 and all(m.ended for m in made)
    valid = [m for m in made if NAME.fullmatch(m.text)]
    assert len(valid) == 200, [m.text for m in made if not NAME.fullmatch(m.text)][:5]
    tally = model.last_tally
    assert sum(tally.places.values()) == tally.drawn - tally.repeats


def test_novel_documents_are_never_training_documents(names_run):
    model = charlstm.load(names_run)
    known = model.known_documents()
    made = model.sample_documents(100, seed=3, novel=True, unique=True)
    texts = [m.text for m in made]
    assert len(texts) == 100 and len(set(texts)) == 100
    assert not set(texts) & known.train
    # without --novel the same draws do copy the training list (the grammar is small)
    plain = model.sample_documents(100, seed=3)
    assert set(m.text for m in plain) & known.train


def test_sample_documents_from_the_command_line(names_run):
    proc = cli("sample", "--checkpoint", str(names_run), "--documents", "20", "--seed", "1",
               "--unique", "--prime", "ba")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 20 and len(set(lines)) == 20
    assert all(line.startswith("ba") for line in lines)
    assert re.search(
        r"of the distinct: \d+ in the training split, \d+ held out, \d+ new", proc.stderr
    )
    proc = cli(
        "sample", "--checkpoint", str(names_run), "--documents", "3", "--jsonl", "--seed", "2"
    )
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [sorted(r) for r in rows] == [["bpc", "chars", "ended", "log_prob", "text"]] * 3
    for row in rows:  # the reported log-probability is the document's own score
        (score,) = charlstm.load(names_run).score_documents([row["text"]])
        assert row["log_prob"] == pytest.approx(score.log_prob, abs=1e-4)


def test_beam_search_over_documents(names_run):
    model = charlstm.load(names_run)
    greedy = model.sample_documents(1, greedy=True)[0]
    one = model.search(beam=1)
    assert one.text == greedy.text and one.ended
    assert one.log_prob == pytest.approx(greedy.log_prob, abs=1e-6)
    for width in (2, 5):
        wider = model.search(beam=width)
        assert wider.ended and NAME.fullmatch(wider.text)
        assert wider.mean_log_prob >= one.mean_log_prob - 1e-9


def test_best_of_keeps_the_likeliest_of_its_draws(names_run):
    model = charlstm.load(names_run)
    found = model.search(best_of=12, seed=5)
    draws = make_documents(model.net, model.vocab, SampleSettings(seed=5), count=12)
    assert found.text in [d.text for d in draws]
    assert found.bpc == pytest.approx(min(d.bpc for d in draws))


def test_scores_per_document_equal_eval_text_on_each_alone(names_run, tmp_path):
    docs = ["bakodi", "mimi", "zzz", "bakodimo"]
    model = charlstm.load(names_run)
    with pytest.raises(VocabError, match="'z'"):
        model.score_documents(docs)
    docs = ["bakodi", "mimi", "bakobakobako", "dada"]
    listed = tmp_path / "candidates.txt"
    listed.write_text("\n".join(docs) + "\n", encoding="utf-8")
    proc = cli("eval", "--checkpoint", str(names_run), "--documents", str(listed), "--jsonl")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == docs  # input order
    for doc, row in zip(docs, rows, strict=True):
        alone = tmp_path / "alone.txt"
        alone.write_text(doc, encoding="utf-8")
        proc = cli("eval", "--checkpoint", str(names_run), "--text", str(alone), "--json")
        assert json.loads(proc.stdout)["loss"] == pytest.approx(row["loss"], abs=1e-5)
        assert row["chars"] == len(doc)
    assert rows[2]["loss"] > rows[0]["loss"]  # "bakobakobako" breaks the grammar's length


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
def test_stream_joined_is_sample_for_every_kind_of_model_and_entry_point(
    trained_run, names_run, labels_run
):
    """One dispatcher decides how to generate and whether it streams: for a text model,
    a document model and a labelled one, the text streamed equals the text sampled, by
    the Python API, the command line and POST /sample (stream: true). (Model.stream on
    a document model once wrote text from no document start, its label ignored.)"""
    cases = [(trained_run, {"prime": "the ", "length": 80, "temperature": 0.8}),
             (names_run, {}), (labels_run, {"label": "up"})]  # fmt: skip
    for run, options in cases:
        model = charlstm.load(run)
        server = Server(run)
        try:
            for seed in (1, 2):
                asked = {**options, "seed": seed}
                sampled = model.sample(**asked)
                assert "".join(model.stream(**asked)) == sampled, (run, seed)
                flags = [f"--{k.replace('_', '-')}={v}" for k, v in asked.items()]
                shown = CliRunner().invoke(app, ["sample", "-c", str(run), *flags])
                assert shown.exit_code == 0 and shown.stdout == sampled + "\n", shown.output
                whole = server.post("/sample", asked).json()
                first = whole["texts"][0] if "texts" in whole else whole["documents"][0]["text"]
                streamed = server.post("/sample", {**asked, "stream": True})
                assert streamed.status_code == 200 and first == streamed.text == sampled
        finally:
            server.stop()
    up = "".join(charlstm.load(labels_run).stream(seed=3, label="up"))
    assert sum(c in "ABC" for c in up) / max(1, len(up)) > 0.9
    with pytest.raises(CharlstmError, match="one text"):
        charlstm.load(names_run).stream(documents=3)


@pytest.mark.slow  # seconds of training, a server or a browser: in `make test`
def test_a_document_model_answers_a_chat_with_one_document(names_run):
    """Chat and completions on a document model: an answer is one document (it ends at
    the document's end, not at a blank line), and an echoed prompt is scored from the
    document start (its first character too)."""
    server = Server(names_run)
    try:
        for seed in (1, 2, 3):
            asked = {"messages": [{"role": "user", "content": "ma"}], "seed": seed,
                     "max_tokens": 200}  # fmt: skip
            made = server.post("/v1/chat/completions", asked).json()["choices"][0]
            assert made["finish_reason"] == "stop" and "\n" not in made["message"]["content"]
        name = charlstm.load(names_run).sample(seed=1, length=4)
        echoed = server.post("/v1/completions", {"prompt": name, "echo": True, "logprobs": 1,
                                                 "max_tokens": 0}).json()  # fmt: skip
        lps = echoed["choices"][0]["logprobs"]["token_logprobs"]
        assert len(lps) == len(name) and all(lp is not None and lp <= 0 for lp in lps), echoed
    finally:
        server.stop()


def test_a_label_steers_what_is_generated(labels_run):
    model = charlstm.load(labels_run)
    upper = "".join(m.text for m in model.sample_documents(50, seed=0, label="up"))
    lower = "".join(m.text for m in model.sample_documents(50, seed=0, label="low"))
    assert sum(c in "ABC" for c in upper) / len(upper) > 0.95
    assert sum(c in "xyz" for c in lower) / len(lower) > 0.95
    proc = cli("eval", "--checkpoint", str(labels_run), "--split", "val", "--json")
    assert sorted(json.loads(proc.stdout)["loss_per_label"]) == ["low", "up"]


def test_resumed_document_training_is_bit_exact(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(grammar_names(600)) + "\n", encoding="utf-8")
    common = ("train.eval_every=10", "train.checkpoint_every=10", "train.decay_steps=40")
    train(documents_config(path, tmp_path / "straight", "train.max_steps=40", *common), tmp_path)
    train(documents_config(path, tmp_path / "split", "train.max_steps=20", *common), tmp_path)
    proc = cli(
        "train", "--resume", str(tmp_path / "split"), "--set", "train.max_steps=40", "--quiet"
    )
    assert proc.returncode == 0, proc.stderr
    straight = load_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert scalars(tmp_path / "split", "train/loss") == scalars(tmp_path / "straight", "train/loss")


def test_carried_state_trains_documents_as_one_stream(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("\n".join(grammar_names(1500)) + "\n", encoding="utf-8")
    cfg = documents_config(path, tmp_path / "run", "data.document_state=carried",
                           "train.max_steps=150")  # fmt: skip
    trainer = train(cfg, tmp_path)
    assert trainer.best_val_loss < 1.6
    made = make_documents(
        trainer.model, trainer.vocab, SampleSettings(seed=0, temperature=0.5), count=50
    )
    assert sum(bool(NAME.fullmatch(m.text)) for m in made) >= 40


# -- mistakes are one line --------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["--documents", "0"], "--documents must be >= 1"),
        (["--unique"], "--unique and --novel choose among documents: give --documents N"),
        (["--jsonl"], "--jsonl writes documents: give --documents N"),
        (["--documents", "2", "--beam", "2"], "--beam and --best-of return one document"),
        (["--documents", "2", "--stop", "x"], "leave out --num-samples and --stop"),
        (["--label", "nope"], "unknown label 'nope' (the model's labels: none"),
    ],
)
def test_bad_document_options_are_one_line(names_run, args, message):
    proc = cli("sample", "--checkpoint", str(names_run), *args)
    assert proc.returncode == 1
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_document_options_on_a_model_of_one_long_text_are_one_line(trained_run, tmp_path):
    proc = cli("sample", "--checkpoint", str(trained_run), "--documents", "3")
    assert proc.returncode == 1 and "need a document model" in proc.stderr
    listed = tmp_path / "d.txt"
    listed.write_text("a\n", encoding="utf-8")
    proc = cli("eval", "--checkpoint", str(trained_run), "--documents", str(listed))
    assert proc.returncode == 1 and "not trained on them" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_end_id_is_kept_in_the_checkpoint(names_run):
    saved = load_checkpoint(names_run / "checkpoints" / "best.pt")
    vocab = Vocab.from_dict(saved["vocab"])
    assert vocab.end_id == vocab.size - 1 and END in vocab.code_points
    assert np.all(np.asarray(vocab.code_points[:-1]) < END)


# -- the exported page ------------------------------------------------------------------


@pytest.mark.slow
@needs_chromium
def test_the_page_makes_whole_documents_and_searches_as_the_cli_does(names_run, tmp_path):
    export(names_run, tmp_path / "names.html", "--precision", "fp32")
    page = tmp_path / "names.html"
    made = page_text(page, "autorun=make&count=20&seed=1&temperature=0.7", tmp_path).split("\n")
    assert len(made) == 20 and all(NAME.fullmatch(m) for m in made), made
    model = charlstm.load(names_run)
    for width in (1, 3):
        shown = page_text(page, f"search=beam&width={width}&autorun=1", tmp_path)
        assert shown == model.search(beam=width).text
    best = page_text(page, "search=best-of&width=6&seed=2&autorun=1", tmp_path)
    assert NAME.fullmatch(best)


@pytest.mark.slow
@needs_chromium
def test_the_page_searches_a_model_of_one_long_text_as_the_cli_does(trained_run, tmp_path):
    export(trained_run, tmp_path / "text.html", "--precision", "fp32")
    shown = page_text(tmp_path / "text.html", "prime=the&length=150&search=beam&width=3&autorun=1",
                      tmp_path)  # fmt: skip
    model = charlstm.load(trained_run)
    assert shown == model.search(prime="the", length=150, beam=3).text
    # over 150 characters the loop guard (no 16-gram twice) decides: the page keeps it too
    assert shown != model.search(prime="the", length=150, beam=3, no_repeat_ngram=0).text


@pytest.mark.slow
@needs_chromium
def test_the_page_shows_document_controls_to_document_models_only(names_run, trained_run, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="needs playwright (dev extra)")
    from tests.test_export import CHROMIUM, FLAGS

    export(names_run, tmp_path / "names.html")
    export(trained_run, tmp_path / "text.html")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        seen = {}
        for name in ("names", "text"):
            page.goto((tmp_path / f"{name}.html").as_uri())
            page.wait_for_selector("#generate")
            seen[name] = page.is_visible("#documents"), page.is_visible("#make")
        browser.close()
    assert seen == {"names": (True, True), "text": (False, False)}


@pytest.mark.slow
@needs_chromium
def test_a_label_in_the_page_steers_its_documents(labels_run, tmp_path):
    export(labels_run, tmp_path / "labels.html")
    up = page_text(tmp_path / "labels.html", "autorun=make&count=10&seed=3&label=up", tmp_path)
    low = page_text(tmp_path / "labels.html", "autorun=make&count=10&seed=3&label=low", tmp_path)
    assert set(up) <= set("ABC\n") and set(low) <= set("xyz\n")


def test_a_model_of_one_long_text_fine_tunes_into_a_document_model(trained_run, tmp_path):
    """The end id (and the labels) are new rows, as new characters are: every old id
    keeps its row."""
    path = tmp_path / "names.txt"
    path.write_text("\n".join(grammar_names(800)) + "\n", encoding="utf-8")
    cfg = documents_config(path, tmp_path / "tuned", f"train.init_from={trained_run}",
                           "model.num_layers=2", "train.max_steps=60")  # fmt: skip
    trainer = train(cfg, tmp_path)
    base = charlstm.load(trained_run)
    assert trainer.vocab.code_points[: base.vocab.size] == base.vocab.code_points
    assert trainer.vocab.end_id >= base.vocab.size  # a new row, after every old one
    made = charlstm.load(tmp_path / "tuned").sample_documents(5, seed=0)
    assert all(m.ended for m in made)


def test_scoring_many_documents_shows_progress(names_run, tmp_path, monkeypatch):
    """eval --documents on many lines says how far it is (it once printed nothing for
    minutes on a million lines)."""
    from charlstm import progress

    monkeypatch.setattr(progress, "SHOW_AFTER_S", 0.0)
    monkeypatch.setattr(progress, "PLAIN_INTERVAL_S", 0.0)
    listed = tmp_path / "many.txt"
    listed.write_text("\n".join(grammar_names(600)) + "\n", encoding="utf-8")
    proc = cli("eval", "--checkpoint", str(names_run), "--documents", str(listed))
    assert proc.returncode == 0 and "600 documents: loss" in proc.stdout
    assert "scoring documents: 512 documents of 600 documents" in proc.stderr


def test_a_document_model_is_compared_with_an_ngram_on_its_held_out_documents(names_run):
    proc = cli("eval", "--checkpoint", str(names_run), "--split", "val", "--baseline", "ngram:4",
               "--json")  # fmt: skip
    base = json.loads(proc.stdout)["baseline"]
    assert base["order"] == 4 and 0 < base["ngram_loss"] < 3 and 0 < base["network_loss"] < 3
    # the names' grammar is in reach of a 4-gram and of the network alike
    assert abs(base["ngram_loss"] - base["network_loss"]) < 1.0


def test_a_clamp_and_the_penalties_steer_documents_too(names_run):
    model = charlstm.load(names_run)
    free = model.sample(documents=8, seed=1)
    held = model.sample(documents=8, seed=1, clamp=["0:0=1", "0:1=-1", "0:2=1"])
    assert held != free and all("\n" not in name for name in held)
    penalised = model.sample(documents=8, seed=1, presence_penalty=2.0, length=40)
    assert penalised != free
    # a character banned by its bias never appears in any document
    e = model.vocab.id_of("a")
    assert all("a" not in name for name in model.sample(documents=8, seed=1,
                                                        logit_bias={e: -100}))  # fmt: skip
