"""`charlstm serve`: real HTTP against uvicorn on a free loopback port."""

from __future__ import annotations

import json
import math
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charlstm.cli import app

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

SERVED = "charlstm-lstm"  # the model name the server answers to


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "charlstm", "serve", "-c", str(run), "--port", str(self.port),
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        # read as it comes: one access line per request must never fill the pipe
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout))
        self.reader.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/health", timeout=1, headers=self.auth(extra))
                return
            except httpx.TransportError:
                if self.proc.poll() is not None:
                    self.reader.join()
                    raise RuntimeError("".join(self.lines)) from None
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    @staticmethod
    def auth(extra) -> dict:
        if "--api-key" in extra:
            return {"Authorization": f"Bearer {extra[list(extra).index('--api-key') + 1]}"}
        return {}

    def post(self, path: str, body: dict, **kwargs):
        return httpx.post(self.url + path, json=body, timeout=60, **kwargs)

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        return self.proc.returncode, "".join(self.lines)


@pytest.fixture(scope="module")
def server(trained_run):
    s = Server(trained_run, "--max-streams", "80", "--max-chars", "5000")
    yield s
    s.stop()


def cli_sample(run: Path, prime: str, length: int, seed: int, temperature: float) -> str:
    result = CliRunner().invoke(app, ["sample", "-c", str(run), "--prime", prime, "--length",
                                      str(length), "--seed", str(seed), "--temperature",
                                      str(temperature)])  # fmt: skip
    assert result.exit_code == 0, result.output
    return result.output[len(prime) : -1]


def test_health_models_and_info(server):
    assert httpx.get(server.url + "/health").json()["status"] == "ok"
    # the start line names the API and the playground a newcomer opens
    assert f"on {server.url}/v1, the playground at {server.url}/ " in "".join(server.lines)
    (listed,) = httpx.get(server.url + "/v1/models").json()["data"]
    assert listed["object"] == "model" and listed["id"] == "charlstm-lstm"
    info = httpx.get(server.url + "/info").json()
    assert info["cell"] == "lstm" and info["vocab_size"] > 10 and info["documents"] is False


def test_the_openai_client_works_unchanged(server, trained_run):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    made = client.completions.create(model=SERVED, prompt="the ", max_tokens=60, seed=3,
                                     temperature=0.8, logprobs=1)  # fmt: skip
    text = made.choices[0].text
    assert len(text) == 60 and made.choices[0].finish_reason == "length"
    assert made.usage.completion_tokens == 60
    assert len(made.choices[0].logprobs.token_logprobs) == 60
    # the text `charlstm sample` writes with the same prime, seed and temperature
    assert text == cli_sample(trained_run, "the ", 60, 3, 0.8)
    streamed = client.completions.create(model=SERVED, prompt="the ", max_tokens=60, seed=3,
                                         temperature=0.8, stream=True)  # fmt: skip
    assert "".join(chunk.choices[0].text for chunk in streamed) == text


def test_top_logprobs_are_the_likeliest_alternatives_whole_and_streamed(server, trained_run):
    """logprobs: N gives, for each character, the N likeliest characters at its place
    with their log-probabilities (OpenAI's shape, read by the official client): the
    model's own softmax, the drawn character's among them when it is that likely."""
    openai = pytest.importorskip("openai")
    import charlstm

    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused")
    made = client.completions.create(model=SERVED, prompt="the ", max_tokens=12, seed=3,
                                     temperature=0.8, logprobs=3)  # fmt: skip
    lp = made.choices[0].logprobs
    assert len(lp.top_logprobs) == 12 and all(len(top) == 3 for top in lp.top_logprobs)
    model = charlstm.load(trained_run)
    first = {s.text: math.log(s.prob) for s in model.next_chars("the ", 3)}
    assert lp.top_logprobs[0] == pytest.approx(first, abs=1e-5)
    for char, chosen, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert max(top.values()) >= chosen and (char not in top or top[char] == chosen)
    streamed = client.completions.create(model=SERVED, prompt="the ", max_tokens=12, seed=3,
                                         temperature=0.8, logprobs=3, stream=True)  # fmt: skip
    tops = [t for chunk in streamed if chunk.choices[0].logprobs
            for t in chunk.choices[0].logprobs.top_logprobs]  # fmt: skip
    assert tops == lp.top_logprobs


def test_completions_take_the_constraints_whole_and_streamed(server):
    import re

    body = {"prompt": "the ", "max_tokens": 60, "n": 4, "seed": 1, "regex": "the [a-z ]+\\.",
            "contains": ["at"]}  # fmt: skip
    made = server.post("/v1/completions", body).json()
    for choice in made["choices"]:
        whole = "the " + choice["text"]
        assert re.fullmatch(r"the [a-z ]+\.", whole) and "at" in whole, whole
    streamed = httpx.post(server.url + "/v1/completions", json={**body, "stream": True},
                          timeout=60).text  # fmt: skip
    assert (
        streamed.count('"finish_reason": "stop"') + streamed.count('"finish_reason": "length"') == 4
    )
    refused = server.post("/v1/completions", {"prompt": "the ", "regex": "[0-9]+"})
    assert refused.status_code == 400 and "cannot begin a text that matches" in refused.text


HOSTILE_CONSTRAINTS = [
    {"regex": "(a|b)*a(a|b){13}"},  # 2**14 states
    {"contains": ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
                  "iota", "kappa", "lambda", "mu"]},  # a product of millions of states
    {"regex": "(" + "|".join(f"w{i}" for i in range(3000)) + ")"},  # a 20 KB pattern
]  # fmt: skip


@pytest.mark.parametrize("hostile", HOSTILE_CONSTRAINTS)
def test_a_pattern_too_complex_is_a_400_and_others_are_answered_meanwhile(server, hostile):
    """The automaton is bounded (states, seconds, pattern length) and built off the event
    loop: the refusal comes in seconds, and /health answers as usual while it is built."""
    answer = {}

    def hostile_request():
        started = time.monotonic()
        answer["response"] = server.post("/v1/completions", {"prompt": "the ", **hostile})
        answer["seconds"] = time.monotonic() - started

    sender = threading.Thread(target=hostile_request)
    sender.start()
    waits = []
    while sender.is_alive():
        started = time.monotonic()
        assert httpx.get(server.url + "/health", timeout=30).status_code == 200
        waits.append(time.monotonic() - started)
        time.sleep(0.05)
    sender.join()
    refused = answer["response"]
    assert refused.status_code == 400, refused.text
    assert "too complex" in refused.text or "at most 4,096 characters" in refused.text
    # /health took a small part of what the refusal took (on the event loop, it waited)
    assert max(waits, default=0) < max(0.25, 0.25 * answer["seconds"]), (waits, answer)
    again = server.post("/v1/completions", {"prompt": "the ", "max_tokens": 5})
    assert again.status_code == 200


def test_a_seed_out_of_range_is_refused_and_the_engine_goes_on(server):
    """One rule for seeds everywhere (0..2**63-1); a seed moved on by a choice's index
    wraps inside it. A seed torch cannot take once killed the engine for everyone."""
    for seed in (2**70, 2**64, -1):
        refused = server.post("/v1/completions", {"prompt": "the ", "seed": seed})
        assert refused.status_code == 400 and "seed must be a whole number in 0.." in refused.text
        assert "--" not in refused.text and refused.json()["error"]["param"] == "seed"
    same = server.post("/sample", {"seed": -1})  # the same rule: the same status and words
    assert same.status_code == 400 and same.json()["error"] == refused.json()["error"]
    edge = server.post("/v1/completions", {"prompt": "the ", "seed": 2**63 - 1, "n": 2,
                                           "max_tokens": 5}).json()  # fmt: skip
    assert [len(c["text"]) for c in edge["choices"]] == [5, 5]
    after = server.post("/v1/completions", {"prompt": "the ", "max_tokens": 5, "seed": 1})
    assert after.status_code == 200 and len(after.json()["choices"][0]["text"]) == 5


def test_a_lone_surrogate_comes_back_escaped_not_as_a_500(server):
    body = b'{"model": "\\ud800", "prompt": "the ", "echo": true, "max_tokens": 3}'
    made = httpx.post(server.url + "/v1/completions", content=body,
                      headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip
    # not the served model: 404, the name it sent quoted back, escaped
    assert made.status_code == 404 and "`\\ud800`" in made.text


def test_a_page_elsewhere_cannot_reach_the_server(server):
    """DNS rebinding: a page on evil.example that rebinds its name to 127.0.0.1 sends
    Host: evil.example; a page's fetch sends its Origin. Both are refused, on every
    endpoint and the playground; this machine's own requests are answered."""
    for path in ("/", "/info", "/health"):
        refused = httpx.get(server.url + path, headers={"Host": "evil.example"})
        assert refused.status_code == 403 and "--allow-host" in refused.json()["error"]["message"]
    fetched = server.post("/v1/completions", {"prompt": "the "},
                          headers={"Origin": "http://evil.example"})  # fmt: skip
    assert fetched.status_code == 403 and "--cors" in fetched.text
    own = httpx.get(server.url + "/info", headers={"Origin": server.url})
    assert own.status_code == 200
    assert httpx.get(server.url + "/info", headers={"Host": f"localhost:{server.port}"}).is_success


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_huge_body_is_refused_before_it_is_read(server):
    """413 from the declared length, or while a body without one arrives: never buffered
    whole (a 200 MB body once cost the server 605 MB before its first check)."""
    before = rss_kb(server.proc.pid)
    huge = b'{"prompt": "' + b"a" * (50 << 20) + b'"}'
    refused = httpx.post(server.url + "/v1/completions", content=huge,
                         headers={"Content-Type": "application/json"}, timeout=60)  # fmt: skip
    assert refused.status_code == 413 and "request body is over" in refused.text

    def chunks():
        for _ in range(50):
            yield b"a" * (1 << 20)

    streamed = httpx.post(server.url + "/score", content=chunks(), timeout=60)
    assert streamed.status_code == 413
    assert rss_kb(server.proc.pid) - before < 20_000  # kB
    many = server.post("/score", {"documents": [""] * 10_001})
    assert many.status_code == 400 and many.json()["error"]["param"] == "documents"
    assert server.post("/v1/completions", {"prompt": "the ", "max_tokens": 3}).is_success


@pytest.mark.slow
def test_half_sent_requests_are_closed_and_a_flood_is_answered_503(trained_run):
    """Clients that send half a request head and wait are closed after --read-timeout-s
    while others are served; past --max-connections the answer is 503 (the server's own
    error shape) and the server is healthy after."""
    s = Server(trained_run, "--read-timeout-s", "1", "--max-connections", "40")
    held = []
    try:
        for _ in range(30):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
            held.append(c)
        assert httpx.get(s.url + "/health", timeout=5).status_code == 200
        assert all(c.recv(10) == b"" for c in held)  # each closed by the server, in time
        flood = [socket.create_connection(("127.0.0.1", s.port), timeout=10) for _ in range(60)]
        for c in flood:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.3)
        full = httpx.get(s.url + "/health", timeout=5)
        assert full.status_code == 503 and full.json()["error"]["type"] == "server_busy"
        for c in flood:
            c.close()
        deadline = time.monotonic() + 10
        while httpx.get(s.url + "/health", timeout=5).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        for c in held:
            c.close()
        s.stop()


def test_every_refusal_has_the_one_error_shape(server):
    """The framework's own answers too: no such path, a method not allowed, a body that
    is not UTF-8 or nests too deep; never {"detail": ...}, never a 500."""
    cases = [
        httpx.get(server.url + "/nowhere"),
        httpx.get(server.url + "/v1/completions"),
        httpx.post(server.url + "/v1/completions", content=b'{"prompt": "\xff\xfe"}',
                   headers={"Content-Type": "application/json"}),
        httpx.post(server.url + "/v1/completions", content=b"[" * 100_000 + b"]" * 100_000,
                   headers={"Content-Type": "application/json"}),
    ]  # fmt: skip
    for answer in cases:
        assert 400 <= answer.status_code < 500, answer.text
        assert set(answer.json()) == {"error"} and answer.json()["error"]["message"]
    hot = server.post("/v1/completions", {"prompt": "the ", "temperature": 1e30, "max_tokens": 4})
    assert hot.status_code == 200  # /sample and /v1/completions take the same temperatures


def test_temperature_0_is_greedy_on_both_endpoints(server, trained_run):
    """As OpenAI and every compatible server treat it (the evaluation harness and
    LangChain send it): the text `charlstm sample --greedy` writes, streamed or not."""
    result = CliRunner().invoke(app, ["sample", "-c", str(trained_run), "--prime", "the ",
                                      "--greedy", "--length", "40"])  # fmt: skip
    greedy = result.stdout[len("the ") : -1]
    body = {"prompt": "the ", "max_tokens": 40, "temperature": 0}
    assert server.post("/v1/completions", body).json()["choices"][0]["text"] == greedy
    streamed = httpx.post(server.url + "/v1/completions", json={**body, "stream": True},
                          timeout=60).text  # fmt: skip
    pieces = [json.loads(line[6:]) for line in streamed.splitlines()
              if line.startswith("data: {")]  # fmt: skip
    assert "".join(p["choices"][0]["text"] for p in pieces) == greedy
    sampled = server.post("/sample", {"prime": "the ", "length": 40, "temperature": 0}).json()
    assert sampled["texts"] == ["the " + greedy]
    negative = server.post("/v1/completions", {"prompt": "the ", "temperature": -1})
    assert 400 <= negative.status_code < 500


def test_the_suggest_endpoint_answers_as_the_command_line(server, trained_run):
    import charlstm

    answer = server.post("/suggest", {"prime": "the ", "chars": 4, "words": 3}).json()
    model = charlstm.load(trained_run)
    assert [c["text"] for c in answer["chars"]] == [c.text for c in model.next_chars("the ", 4)]
    assert [w["prob"] for w in answer["words"]] == pytest.approx(
        [w.prob for w in model.next_words("the ", 3)]
    )
    wrong = server.post("/suggest", {"chars": -1}).json()["error"]
    assert wrong["message"].startswith("chars must be in 0..1000") and wrong["param"] == "chars"
    refused = server.post("/suggest", {"label": "x"})
    assert refused.status_code == 400 and "need a document model" in refused.text


@pytest.mark.slow
def test_a_seeded_text_is_the_same_alone_and_beside_others(server):
    body = {"prompt": "and ", "max_tokens": 300, "seed": 11, "temperature": 1.0}
    alone = server.post("/v1/completions", body).json()["choices"][0]["text"]
    results = {}

    def ask(i: int) -> None:
        mine = {**body, "seed": 11 if i == 0 else 100 + i, "max_tokens": 300 - 4 * i}
        results[i] = server.post("/v1/completions", mine).json()["choices"][0]["text"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[0] == alone and len(alone) == 300
    assert len(set(results.values())) == 64  # the others did run beside it, with their seeds


def test_the_native_sample_endpoint_takes_every_sample_option(server, trained_run):
    texts = server.post("/sample", {"prime": "the ", "length": 40, "seed": 2,
                                    "num_samples": 3}).json()["texts"]  # fmt: skip
    assert len(texts) == 3 and all(t.startswith("the ") and len(t) == 44 for t in texts)
    beam = server.post("/sample", {"prime": "the ", "length": 30, "beam": 3}).json()
    import charlstm

    assert beam["text"] == charlstm.load(trained_run).search(prime="the ", length=30, beam=3).text
    refused = server.post("/sample", {"documents": 3})
    assert (
        refused.status_code == 400 and "need a document model" in refused.json()["error"]["message"]
    )
    assert server.post("/sample", {"length": -1}).status_code == 400


def test_a_stop_string_ends_a_completion(server):
    made = server.post("/v1/completions", {"prompt": "the ", "max_tokens": 400, "seed": 1,
                                           "stop": ["e"]}).json()  # fmt: skip
    choice = made["choices"][0]
    assert "e" not in choice["text"] and choice["finish_reason"] == "stop"


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"prompt": "x", "bogus": 1}, 400, "bogus: Extra inputs are not permitted"),
        ({"prompt": "x", "temperature": -1}, 400, "temperature must be > 0 (got -1"),
        ({"prompt": "x", "max_tokens": 9000}, 400, "max_tokens: at most 5000 characters"),
        ({"prompt": "the\u2603"}, 400, "1 character(s) not in the model's vocabulary: '\u2603'"),
        ({"prompt": ["a"] * 9, "n": 8}, 400, "9 prompts x 8 completions each is 72; at most 64"),
        ({"prompt": [[1, 2, 100_000]]}, 400, "token 100000 is no id of this model"),
        ({"prompt": [[1]] * 100_000}, 400, "prompt: at most 64 prompts in one request"),
        ({"prompt": "x", "logit_bias": {"100000": 5}}, 400, "100000 is no character id"),
        ({"prompt": "x", "logit_bias": {"a": 5}}, 400, "logit_bias maps character ids"),
        ({"prompt": "x", "frequency_penalty": 3}, 400, "frequency_penalty must be in -2..2"),
        ({"prompt": "x", "n": 3, "best_of": 2}, 400, "best_of must be >= n"),
        ({"prompt": "x", "best_of": 3, "stream": True}, 400, "best_of cannot be streamed"),
        ({"prompt": "x", "suffix": "y"}, 400, "it cannot insert text"),
        ({"prompt": "x", "model": "gpt-4"}, 404, "The model `gpt-4` does not exist"),
        ({"prompt": "a" * 320_001}, 400, "prompt: at most 320,000 characters"),
    ],
)
def test_bad_requests_are_one_line(server, body, status, message):
    answer = server.post("/v1/completions", body)
    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]
    if status == 400:  # field names, not the CLI's flags
        assert "--" not in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    "raw, status, message",
    [
        (b'{"prompt": "x",', 400, "the body is not valid JSON: Expecting"),
        (b"[1, 2]", 400, "body: Input should be a valid dictionary"),
        (b"", 400, "body: Field required"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_one_line(server, raw, status, message):
    answer = httpx.post(server.url + "/v1/completions", content=raw,
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == status
    assert message in answer.json()["error"]["message"]
    assert "\n" not in answer.json()["error"]["message"]


@pytest.mark.slow
def test_a_full_server_answers_503_and_a_gone_client_frees_its_stream(trained_run):
    s = Server(trained_run, "--max-streams", "2", "--max-chars", "10000000")
    body = {"prompt": "the ", "max_tokens": 10000000, "stream": True}
    clients = [httpx.Client(timeout=60) for _ in range(2)]
    opened = []
    try:
        for client in clients:
            request = client.build_request("POST", s.url + "/v1/completions", json=body)
            response = client.send(request, stream=True)
            lines = response.iter_lines()  # kept: a dropped iterator closes the response
            next(lines)  # it is generating
            opened.append((response, lines))
        assert httpx.get(s.url + "/health").json()["active_streams"] == 2
        busy = s.post("/v1/completions", {"prompt": "a", "max_tokens": 5})
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        for response, _ in opened:
            response.close()
        for client in clients:
            client.close()
        deadline = time.monotonic() + 10
        while httpx.get(s.url + "/health").json()["active_streams"]:
            assert time.monotonic() < deadline, "a stream kept running for nobody"
            time.sleep(0.1)
        assert s.post("/v1/completions", {"prompt": "a", "max_tokens": 5}).status_code == 200
    finally:
        s.stop()


@pytest.mark.slow
def test_sample_and_score_jobs_are_bounded_too(trained_run):
    s = Server(trained_run, "--max-jobs", "1", "--max-chars", "100000")
    try:
        long = {}
        worker = threading.Thread(target=lambda: long.update(
            answer=s.post("/sample", {"prime": "the ", "length": 8000, "seed": 0})))  # fmt: skip
        worker.start()
        deadline = time.monotonic() + 20
        while httpx.get(s.url + "/health").json()["jobs"] == 0:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.02)
        refused = s.post("/score", {"text": "the cat"})
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "busy (1 /sample or /score requests)" in refused.json()["error"]["message"]
        worker.join()
        assert long["answer"].status_code == 200
        assert s.post("/score", {"text": "the cat"}).status_code == 200  # room again
        too_long = s.post("/score", {"documents": ["x" * 4_000_000, "y" * 2_400_001]})
        assert too_long.status_code == 400 and "at most 6,400,000 characters" in too_long.text
        # a client that gives up stops its job: no compute spent for nobody
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.url + "/sample", json={"prime": "the ", "length": 6_000_000},
                       timeout=httpx.Timeout(60, read=1.0))  # fmt: skip
        deadline = time.monotonic() + 10  # the whole sample would take minutes
        while httpx.get(s.url + "/health").json()["jobs"]:
            assert time.monotonic() < deadline, "the job ran on for nobody"
            time.sleep(0.1)
        # nor does an automaton being built for a client gone (it held the slot minutes)
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(s.url + "/sample", json={"prime": "the ", **HOSTILE_CONSTRAINTS[1]},
                       timeout=httpx.Timeout(60, read=0.3))  # fmt: skip
        deadline = time.monotonic() + 10
        while httpx.get(s.url + "/health").json()["jobs"]:
            assert time.monotonic() < deadline, "the build ran on for nobody"
            time.sleep(0.1)
        assert s.post("/sample", {"prime": "the ", "length": 20}).status_code == 200
    finally:
        s.stop()


@pytest.mark.slow  # a process of its own (seconds): in `make test`
def test_an_api_key_is_checked_on_every_request(trained_run):
    keyed = Server(trained_run, "--api-key", "s3cret")
    try:
        assert httpx.get(keyed.url + "/health").status_code == 401
        wrong = httpx.get(keyed.url + "/info", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = httpx.get(keyed.url + "/info", headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200
        for scheme in ("bearer", "BEARER"):  # the scheme's case does not matter (RFC 7235)
            any_case = httpx.get(keyed.url + "/info", headers={"Authorization": f"{scheme} s3cret"})
            assert any_case.status_code == 200
        key_case = httpx.get(keyed.url + "/info", headers={"Authorization": "Bearer S3CRET"})
        assert key_case.status_code == 401  # the key's does
    finally:
        keyed.stop()


@pytest.mark.slow  # a process of its own (seconds): in `make test`
def test_every_request_has_an_id_and_one_access_line(trained_run):
    s = Server(trained_run, "--api-key", "k")
    key = {"Authorization": "Bearer k"}
    try:
        traced = s.post("/v1/completions", {"prompt": "the ", "max_tokens": 25, "seed": 0},
                        headers={**key, "X-Request-ID": "trace-42"})  # fmt: skip
        assert traced.headers["x-request-id"] == "trace-42"
        assert traced.json()["id"] == "cmpl-trace-42"
        fresh = s.post("/v1/completions", {"prompt": "the ", "max_tokens": 5, "stream": True},
                       headers={**key, "X-Request-ID": "no spaces allowed"})  # fmt: skip
        rid = fresh.headers["x-request-id"]
        assert len(rid) == 16 and f'"cmpl-{rid}"' in fresh.text  # a new id, not the client's
        assert s.post("/v1/completions", {"prompt": "x"}).status_code == 401
    finally:
        code, out = s.stop()
    access = [line for line in out.splitlines() if " /v1/completions " in line]
    assert len(access) == 3, out
    assert "trace-42 POST /v1/completions 200" in access[0] and "25 chars" in access[0]
    assert f"{rid} POST /v1/completions 200" in access[1] and "5 chars" in access[1]
    assert "first after" in access[1]  # a stream logs its time to first character
    assert " 401 " in access[2]
    assert code == 0 and "4 requests (3 x 200, 1 x 401)" in out  # /health at start-up too


@pytest.mark.slow  # a process of its own (seconds): in `make test`
def test_cors_is_closed_unless_an_origin_is_given(server, trained_run):
    asked = {"Origin": "http://elsewhere.test", "Access-Control-Request-Method": "POST"}
    closed = httpx.options(server.url + "/v1/completions", headers=asked)
    assert "access-control-allow-origin" not in closed.headers
    opened = Server(trained_run, "--cors", "http://app.test", "--api-key", "k",
                    "--allow-host", "my.box")  # fmt: skip
    try:
        named = httpx.get(opened.url + "/", headers={"Host": "my.box"})
        assert named.status_code == 200  # a name given with --allow-host is answered
        # the browser's preflight carries no key; the request itself must
        preflight = httpx.options(opened.url + "/v1/completions",
                                  headers={**asked, "Origin": "http://app.test"})  # fmt: skip
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://app.test"
        other = httpx.options(opened.url + "/v1/completions", headers=asked)
        assert "access-control-allow-origin" not in other.headers
        keyless = httpx.get(opened.url + "/info", headers={"Origin": "http://app.test"})
        assert keyless.status_code == 401
    finally:
        opened.stop()


def test_binding_beyond_loopback_needs_a_key(trained_run):
    proc = subprocess.run([sys.executable, "-m", "charlstm", "serve", "-c", str(trained_run),
                           "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 1 and "give --api-key KEY" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigterm_finishes_or_ends_streams_cleanly_and_exits_0(trained_run):
    openai = pytest.importorskip("openai")
    s = Server(trained_run, "--drain-s", "1.5", "--max-chars", "10000000")
    client = openai.OpenAI(base_url=s.url + "/v1", api_key="unused")
    endless = client.completions.create(model=SERVED, prompt="the ", max_tokens=10_000_000,
                                        stream=True)  # fmt: skip
    short = client.completions.create(model=SERVED, prompt="the ", max_tokens=500, stream=True)
    text = next(iter(endless)).choices[0].text
    next(iter(short))
    started = time.monotonic()
    s.proc.send_signal(signal.SIGTERM)
    s.proc.send_signal(signal.SIGTERM)  # a supervisor repeating itself changes nothing
    last = None
    for chunk in endless:  # the official client reads the end it is given
        text += chunk.choices[0].text
        last = chunk.choices[0].finish_reason or last
    assert last == "abort" and len(text) > 100  # it ran on for the drain, then ended
    assert [c.choices[0].finish_reason for c in short][-1] == "length"  # finished in time
    code, out = s.stop()
    assert code == 0 and time.monotonic() - started < 15
    assert "stopped: 2 streams served" in out and "3 requests (3 x 200)" in out
    with pytest.raises(httpx.TransportError):
        httpx.get(s.url + "/health", timeout=2)


@pytest.mark.slow
def test_scores_per_document_over_http(tmp_path_factory):
    from tests.test_documents import documents_config, grammar_names, train

    root = tmp_path_factory.mktemp("serve-docs")
    corpus = root / "names.txt"
    corpus.write_text("\n".join(grammar_names(600)) + "\n", encoding="utf-8")
    train(documents_config(corpus, root / "run", "train.max_steps=60",
                           f"data.cache_dir={root / 'cache'}"), root)  # fmt: skip
    s = Server(root / "run")
    try:
        scored = s.post("/score", {"documents": ["bako", "mimi"]}).json()["documents"]
        assert [d["text"] for d in scored] == ["bako", "mimi"] and scored[0]["chars"] == 4
        made = s.post("/v1/completions", {"prompt": "", "max_tokens": 40, "n": 4, "seed": 0}).json()
        assert all(c["finish_reason"] == "stop" for c in made["choices"])  # each ended itself
        docs = s.post("/sample", {"documents": 5, "unique": True, "seed": 1}).json()
        assert len(docs["documents"]) == 5 and docs["places"] is not None
    finally:
        s.stop()


@pytest.mark.slow
def test_watch_reloads_a_new_checkpoint_and_keeps_serving_through_a_corrupt_one(
    trained_run, tmp_path
):
    import shutil

    import torch

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    best = run / "checkpoints" / "best.pt"
    s = Server(run, "--watch", "--max-chars", "10000000")
    try:
        step = httpx.get(s.url + "/info").json()["step"]
        body = {"prompt": "the ", "max_tokens": 10000000, "stream": True}
        client = httpx.Client(timeout=60)
        response = client.send(client.build_request("POST", s.url + "/v1/completions", json=body),
                               stream=True)  # fmt: skip
        lines = response.iter_lines()
        next(lines)  # a stream in flight through both changes

        def replace_with(data: bytes) -> None:  # as the trainer writes: whole, then renamed
            (run / "incoming").write_bytes(data)
            (run / "incoming").replace(best)

        def wait_for(text: str) -> None:
            deadline = time.monotonic() + 20
            while httpx.get(s.url + "/info").json()["step"] != text:
                assert time.monotonic() < deadline, f"step never became {text}"
                time.sleep(0.2)

        replace_with(b"not a checkpoint")
        time.sleep(2.5)  # polled every second: it has seen the file, and refused it
        assert httpx.get(s.url + "/info").json()["step"] == step
        assert s.post("/v1/completions", {"prompt": "the ", "max_tokens": 5}).status_code == 200
        payload = torch.load(trained_run / "checkpoints" / "best.pt", weights_only=False)
        payload["step"] = step + 1000
        torch.save(payload, run / "new.pt")
        replace_with((run / "new.pt").read_bytes())
        wait_for(step + 1000)
        more = [next(lines) for _ in range(5)]  # the stream in flight carried on
        assert all(line.startswith("data: ") or line == "" for line in more)
        assert httpx.get(s.url + "/health").json()["active_streams"] == 1
        response.close()
        client.close()
    finally:
        code, out = s.stop()
    assert "--watch: kept step" in out and f"now serving step {step + 1000}" in out
