"""What clients written for OpenAI's API send, and what they compute, against `charlstm
serve`: the completions fields of OpenAI's specification, chat completions, the
tokenizer the Hugging Face ecosystem loads, and the real clients (the official openai
package, LangChain, EleutherAI's evaluation harness)."""

from __future__ import annotations

import json
import math

import httpx
import pytest

import charlstm
from charlstm.generate.clamp import clamped
from charlstm.options import SampleSettings
from tests.test_serve import Server

# Servers and third-party clients: seconds apiece, in `make test` (CI), not `make test-fast`.
pytestmark = pytest.mark.slow

NAME = "charlstm-lstm"


@pytest.fixture(scope="module")
def server(trained_run):
    s = Server(trained_run, "--model-name", "gpt-3.5-turbo-instruct", "--show-prompt")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def model(trained_run):
    return charlstm.load(trained_run)


def complete(server, **body) -> dict:
    answer = server.post("/v1/completions", body)
    assert answer.status_code == 200, answer.text
    return answer.json()


PROMPT = "the cat sat on the mat. "


def test_echo_scores_every_prompt_character_as_eval_does(server, model):
    made = complete(server, prompt=PROMPT, echo=True, logprobs=2, max_tokens=0, temperature=0)
    (choice,) = made["choices"]
    lp = choice["logprobs"]
    assert choice["text"] == PROMPT and choice["finish_reason"] == "length"
    assert lp["tokens"] == list(PROMPT) and lp["text_offset"] == list(range(len(PROMPT)))
    # the first character has nothing before it: null, as OpenAI gives it
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    total = sum(lp["token_logprobs"][1:])
    scored = model.score(PROMPT, streams=1)
    assert scored.chars == len(PROMPT) - 1
    assert total == pytest.approx(-scored.loss * scored.chars, rel=1e-6)
    # each place's alternatives: the likeliest first, the character's own among them
    # when it is the likeliest
    places = zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], strict=True)
    for token, own, top in list(places)[1:]:
        assert len(top) <= 2 and max(top.values()) >= own
        assert (token in top) or own < min(top.values())
    assert made["usage"] == {"prompt_tokens": len(PROMPT), "completion_tokens": 0,
                             "total_tokens": len(PROMPT)}  # fmt: skip


def test_echo_then_completion_offsets_run_on_through_both(server):
    made = complete(server, prompt=PROMPT, echo=True, logprobs=1, max_tokens=5, seed=4)
    (choice,) = made["choices"]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(PROMPT) + 5 == len(choice["text"])
    assert lp["text_offset"] == list(range(len(choice["text"])))
    assert "".join(lp["tokens"]) == choice["text"]
    # without echo, the completion's offsets still count from the prompt's start
    alone = complete(server, prompt=PROMPT, logprobs=0, max_tokens=5, seed=4)["choices"][0]
    assert alone["text"] == choice["text"][len(PROMPT) :]
    assert alone["logprobs"]["text_offset"] == list(range(len(PROMPT), len(PROMPT) + 5))
    assert alone["logprobs"]["token_logprobs"] == lp["token_logprobs"][len(PROMPT) :]


def test_a_list_of_prompts_gets_n_choices_each_indexed_as_openai_does(server, model):
    made = complete(server, prompt=["the ", "a cat "], n=2, max_tokens=12, seed=9)
    assert [c["index"] for c in made["choices"]] == [0, 1, 2, 3]
    texts = [c["text"] for c in made["choices"]]
    alone = complete(server, prompt="a cat ", n=2, max_tokens=12, seed=9)["choices"]
    assert texts[2:] == [c["text"] for c in alone]  # a prompt's choices do not depend on others
    # token ids are the model's character ids (its exported tokenizer's)
    ids = model.vocab.encode("a cat ").tolist()
    by_ids = complete(server, prompt=[ids], n=2, max_tokens=12, seed=9)["choices"]
    assert [c["text"] for c in by_ids] == texts[2:]
    assert made["usage"]["prompt_tokens"] == len("the ") + len("a cat ")


def test_penalties_and_logit_bias_change_the_draw_as_in_the_python_api(server, model):
    plain = complete(server, prompt="the ", max_tokens=80, temperature=0)["choices"][0]["text"]
    zero = complete(server, prompt="the ", max_tokens=80, temperature=0, frequency_penalty=0,
                    presence_penalty=0)["choices"][0]["text"]  # fmt: skip
    assert zero == plain  # 0 is no change (LangChain always sends both)
    for field in ("frequency_penalty", "presence_penalty"):
        body = {"prompt": "the ", "max_tokens": 80, "temperature": 0, field: 1.5}
        penalised = complete(server, **body)["choices"][0]["text"]
        assert penalised != plain
        # the engine's batch draws what Model.sample draws
        assert penalised == model.sample("the ", length=80, greedy=True, **{field: 1.5})[4:]
    e = model.vocab.id_of("e")
    banned = complete(server, prompt="the ", max_tokens=200, seed=1, temperature=1,
                      logit_bias={str(e): -100})["choices"][0]["text"]  # fmt: skip
    assert "e" not in banned and len(banned) == 200
    z = model.vocab.id_of("t")
    forced = complete(server, prompt="the ", max_tokens=20, seed=1,
                      logit_bias={str(z): 100})["choices"][0]["text"]  # fmt: skip
    assert forced == "t" * 20


def test_best_of_returns_the_likeliest_per_character(server):
    drawn = complete(server, prompt="the ", n=4, max_tokens=30, seed=2, logprobs=0)["choices"]
    mean = [sum(c["logprobs"]["token_logprobs"]) / 30 for c in drawn]
    best = complete(server, prompt="the ", best_of=4, max_tokens=30, seed=2)["choices"]
    assert len(best) == 1 and best[0]["text"] == drawn[mean.index(max(mean))]["text"]


def test_stream_options_include_usage_ends_with_the_usage(server):
    with httpx.stream("POST", server.url + "/v1/completions", timeout=30,
                      json={"prompt": "the ", "max_tokens": 7, "stream": True,
                            "stream_options": {"include_usage": True}}) as answer:  # fmt: skip
        events = [line[6:] for line in answer.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    last = json.loads(events[-2])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 7


def test_the_model_field_names_the_served_model_or_an_alias(server):
    assert complete(server, prompt="a", model=NAME, max_tokens=1)["model"] == NAME
    assert complete(server, prompt="a", model="gpt-3.5-turbo-instruct", max_tokens=1)
    other = server.post("/v1/completions", {"prompt": "a", "model": "davinci"})
    assert other.status_code == 404
    assert other.json()["error"]["code"] == "model_not_found"
    assert other.json()["error"]["param"] == "model"


def test_the_official_client_sees_400s_as_bad_requests(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="best_of must be >= n"):
        client.completions.create(model=NAME, prompt="a", n=3, best_of=2)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="nope", prompt="a")
    made = client.completions.create(model=NAME, prompt="the ", max_tokens=0, echo=True,
                                     logprobs=1, user="someone", suffix=None)  # fmt: skip
    assert made.choices[0].text == "the " and made.choices[0].logprobs.token_logprobs[0] is None
    assert not math.isnan(sum(made.choices[0].logprobs.token_logprobs[1:]))


# -- the tokenizer the Hugging Face ecosystem loads ----------------------------------------
WORDS = "héllo wörld\n\tdef f(x):  return {'雪': 1}\r\n"


@pytest.mark.parametrize("kind", ["char", "documents", "byte", "byte documents"])
def test_the_exported_tokenizer_numbers_every_character_as_charlstm(tmp_path, kind):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    from charlstm.data.vocab import Vocab
    from charlstm.export.tokenizer import END_TOKEN, LABEL_TOKEN, write_tokenizer

    vocab = Vocab.bytes() if kind.startswith("byte") else Vocab.from_code_points(map(ord, WORDS))
    if "documents" in kind:
        vocab = vocab.with_documents(["poem", "prose"])
    write_tokenizer(tmp_path, vocab)
    raw = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    hf = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    chars = WORDS if vocab.mode == "char" else [chr(b) for b in range(128)] + list("é雪")
    for char in chars:  # every character, alone: its own id(s), and back
        ids = vocab.encode(char).tolist()
        assert raw.encode(char).ids == ids and hf.encode(char, add_special_tokens=False) == ids
        assert raw.decode(ids) == char and hf.decode(ids) == char
    assert hf.encode(WORDS, add_special_tokens=False) == vocab.encode(WORDS).tolist()
    assert len(hf) == vocab.size
    # characters outside the vocabulary are dropped, as unknown: skip drops them
    assert hf.encode("hZ😀o", add_special_tokens=False) == vocab.encode("hZ😀o", "skip").tolist()
    if vocab.documents:
        assert hf.eos_token == END_TOKEN and hf.eos_token_id == vocab.end_id
        assert hf.convert_tokens_to_ids(LABEL_TOKEN.format("prose")) == vocab.label_id("prose")
        # the markers' text in a text is text, not a marker
        assert (
            hf.encode(END_TOKEN, add_special_tokens=False)
            == vocab.encode(END_TOKEN, "skip").tolist()
        )
        # and decoding leaves markers out, as charlstm's decoding does
        ids = [vocab.end_id, *vocab.encode("hé").tolist(), vocab.end_id]
        assert hf.decode(ids, skip_special_tokens=True) == vocab.decode(ids) == "hé"


# -- chat completions ------------------------------------------------------------------------
def spoken(model, text: str) -> str:
    """What a text becomes in the model's reading: characters it lacks dropped."""
    return model.vocab.decode(model.vocab.encode(text, "skip").tolist())


def test_chat_is_a_completion_of_the_messages_in_the_play_format(server, model):
    parts = [{"type": "text", "text": "the "}, {"type": "text", "text": "cat"}]
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "name": "anne", "content": parts}]  # fmt: skip
    answer = server.post("/v1/chat/completions", {"messages": messages, "max_tokens": 60,
                                                  "seed": 3, "n": 2})  # fmt: skip
    assert answer.status_code == 200, answer.text
    made = answer.json()
    assert made["object"] == "chat.completion" and [c["index"] for c in made["choices"]] == [0, 1]
    written = "SYSTEM:\nbe brief\n\nANNE:\nthe cat\n\nASSISTANT:\n"
    plain = complete(server, prompt=spoken(model, written), max_tokens=60, seed=3, n=2,
                     stop="\n\n")["choices"]  # fmt: skip
    for chat, completion in zip(made["choices"], plain, strict=True):
        assert chat["message"] == {"role": "assistant", "content": completion["text"]}
        assert chat["finish_reason"] == completion["finish_reason"]
        assert "\n\n" not in chat["message"]["content"]  # the turn ends at a blank line
    # --show-prompt: the text the messages became, in the server's log
    assert repr(spoken(model, written)) in "".join(server.lines)


def test_the_official_client_chats_streamed_and_whole_with_logprobs(server):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    said = [{"role": "user", "content": "the "}]
    whole = client.chat.completions.create(model=NAME, messages=said, max_tokens=30, seed=5,
                                           logprobs=True, top_logprobs=2)  # fmt: skip
    content = whole.choices[0].message.content
    entries = whole.choices[0].logprobs.content
    assert "".join(e.token for e in entries) == content and content
    for e in entries:
        assert e.bytes == list(e.token.encode()) and len(e.top_logprobs) == 2
        assert max(t.logprob for t in e.top_logprobs) >= e.logprob
    chunks = list(client.chat.completions.create(
        model=NAME, messages=said, max_tokens=30, seed=5, stream=True,
        stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
    assert chunks[-1].usage.completion_tokens == len(content)
    with pytest.raises(openai.BadRequestError, match="tools: Extra inputs"):
        client.chat.completions.create(model=NAME, messages=said, tools=[
            {"type": "function", "function": {"name": "f", "parameters": {}}}])  # fmt: skip


def test_a_chat_template_runs_sandboxed_and_its_mistakes_are_one_line():
    from charlstm.errors import SettingsError
    from charlstm.serve.chat import DEFAULT_TEMPLATE, Message, render

    said = [Message(role="user", content="hi"), Message(role="assistant", content="hello")]
    assert render(DEFAULT_TEMPLATE, said, 1000) == "USER:\nhi\n\nASSISTANT:\nhello\n\nASSISTANT:\n"
    own = "{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}<bot> "
    assert render(own, said, 1000) == "<user> hi\n<assistant> hello\n<bot> "
    with pytest.raises(SettingsError, match="unsafe|not safely"):
        render("{{ messages.__class__.__mro__ }}", said, 1000)
    with pytest.raises(SettingsError, match="serve.chat_template line 1"):
        render("{% for %}", said, 1000)
    with pytest.raises(SettingsError, match="at most 10 characters"):
        render(DEFAULT_TEMPLATE, said, 10)
    endless = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    with pytest.raises(SettingsError, match="at most 1,000 characters"):
        render(endless, said, 1000)  # stopped as it writes, not after 10^10 characters
    with pytest.raises(SettingsError, match="text parts only"):
        render(DEFAULT_TEMPLATE, [Message(role="user", content=[{"type": "image_url"}])], 1000)


# -- third-party clients -----------------------------------------------------------------------
def test_langchain_invokes_streams_and_batches(server):
    langchain_openai = pytest.importorskip("langchain_openai")
    # LangChain's default model name, answered through --model-name; it always sends
    # frequency_penalty and presence_penalty 0
    llm = langchain_openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_tokens=20,
                                  temperature=0, max_retries=0)  # fmt: skip
    said = llm.invoke("the ")
    assert len(said) == 20
    assert "".join(llm.stream("the ")) == said
    both = llm.batch(["the ", "a cat "])
    assert both[0] == said and both[1] == llm.invoke("a cat ")
    chat = langchain_openai.ChatOpenAI(base_url=server.url + "/v1", api_key="unused", model=NAME,
                                       max_tokens=20, temperature=0, max_retries=0)  # fmt: skip
    answer = chat.invoke("the ").content
    assert answer and "".join(c.content for c in chat.stream("the ")) == answer


@pytest.mark.slow
def test_the_evaluation_harness_scores_what_eval_scores(server, model, trained_run, tmp_path,
                                                        monkeypatch):  # fmt: skip
    pytest.importorskip("lm_eval")
    from typer.testing import CliRunner

    from charlstm.cli import app

    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    exported = tmp_path / "exported"
    done = CliRunner().invoke(app, ["export", "-c", str(trained_run), "--format", "safetensors",
                                    "--out", str(exported)])  # fmt: skip
    assert done.exit_code == 0, done.output
    # (the harness moves a context's trailing space to its continuation: none here)
    pairs = [("the cat sat on", " the mat"), ("a dog", " ran far"), ("it was", " the end.")]
    rows = tmp_path / "pairs.jsonl"
    rows.write_text("".join(json.dumps({"context": c, "continuation": t}) + "\n"
                            for c, t in pairs))  # fmt: skip
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "pairs.yaml").write_text(
        "task: charlstm_pairs\ndataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {rows}\n"
        "test_split: test\noutput_type: loglikelihood\ntarget_delimiter: ''\n"
        "doc_to_text: '{{context}}'\ndoc_to_target: '{{continuation}}'\n"
        "metric_list:\n  - metric: perplexity\n"
    )  # fmt: skip
    import lm_eval
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(
        model="local-completions",
        model_args={"model": NAME, "base_url": server.url + "/v1/completions",
                    "tokenizer": str(exported), "tokenizer_backend": "huggingface",
                    "max_retries": 1},  # fmt: skip
        tasks=["charlstm_pairs"], task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
        log_samples=True,
    )  # fmt: skip

    def total(text: str) -> float:
        scored = model.score(text, streams=1)
        return -scored.loss * scored.chars

    got = {
        s["doc"]["context"]: s["filtered_resps"][0][0] for s in results["samples"]["charlstm_pairs"]
    }
    for context, continuation in pairs:
        assert got[context] == pytest.approx(
            total(context + continuation) - total(context), rel=1e-6
        )


def test_the_server_steers_as_the_python_api_does(server, model):
    held = ["1:3=1", "0:5=-0.5"]
    made = server.post("/sample", {"prime": "the ", "length": 80, "seed": 2, "clamp": held})
    assert made.status_code == 200, made.text
    assert made.json()["texts"][0] == model.sample("the ", length=80, seed=2, clamp=held)
    odds = server.post("/suggest", {"prime": "the ", "chars": 3, "words": 0, "clamp": held})
    here = model._with_net(clamped(model.net, SampleSettings(clamp=held).clamp))
    expected = here.next_chars("the ", 3)
    assert [c["text"] for c in odds.json()["chars"]] == [c.text for c in expected]
    assert [c["prob"] for c in odds.json()["chars"]] == pytest.approx([c.prob for c in expected])
    refused = server.post("/sample", {"clamp": ["7:0=1"]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "clamp"


def test_a_byte_model_scores_and_chats_byte_by_byte(tmp_path_factory):
    from conftest import make_text, quiet_console, small_config

    from charlstm.training.trainer import Trainer

    root = tmp_path_factory.mktemp("bytes")
    corpus = root / "corpus.txt"
    corpus.write_text(make_text(200) + "café naïve ☃\n" * 20, encoding="utf-8")
    cfg = small_config(corpus, root / "run", "train.max_steps=30", "data.vocab=byte",
                       f"data.cache_dir={root / 'cache'}")  # fmt: skip
    Trainer(cfg, console=quiet_console(root / "log.txt"), quiet=True).run()
    model = charlstm.load(root / "run")
    byte_server = Server(root / "run")
    try:
        prompt = "the café ☃"
        asked = {"prompt": prompt, "echo": True, "logprobs": 1, "max_tokens": 0}
        made = byte_server.post("/v1/completions", asked).json()
        lp = made["choices"][0]["logprobs"]
        assert len(lp["tokens"]) == len(prompt.encode("utf-8"))  # a token per byte
        assert lp["tokens"][7:9] == ["bytes:\\xc3", "bytes:\\xa9"]  # é, as OpenAI writes it
        scored = model.score(prompt, streams=1)
        assert sum(lp["token_logprobs"][1:]) == pytest.approx(-scored.loss * scored.chars,
                                                               rel=1e-6)  # fmt: skip
        chat = byte_server.post("/v1/chat/completions", {"messages": [
            {"role": "user", "content": "café"}], "max_tokens": 20, "seed": 1})  # fmt: skip
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"]
    finally:
        byte_server.stop()
