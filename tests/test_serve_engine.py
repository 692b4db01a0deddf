"""The continuous-batching engine on its own: plain asyncio, no HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
import torch

from charlstm.api import load
from charlstm.generate.sample import draw_texts
from charlstm.options import MAX_LENGTH, SampleSettings
from charlstm.serve.engine import Done, Engine, Full, Piece, Stream


@pytest.fixture(scope="module")
def model(trained_run):
    return load(trained_run, "cpu")


def context_of(model, prime: str) -> list[int]:
    """The ids a request is conditioned on, as the server builds them."""
    from charlstm.generate.context import prime_context

    return prime_context(model.vocab, prime, "error")[1]


@contextlib.asynccontextmanager
async def running(model, max_streams: int = 4, interval: float = 0.0):
    """An engine stepping on this event loop, closed at the end."""
    engine = Engine(model.net, model.vocab, max_streams, interval=interval)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.close()


def endless(model, prime: str = "the ", seed: int = 0, stops: tuple = ()) -> Stream:
    return Stream(context_of(model, prime), SampleSettings(length=MAX_LENGTH, seed=seed), stops)


async def run_streams(engine: Engine, requests: list[tuple[str, SampleSettings, tuple]], model,
                      delay_each: float = 0.0):  # fmt: skip
    """Submit each (prime, settings, stops), `delay_each` seconds apart (so later ones
    join a batch in flight); return each one's (pieces, log-probs, Done, piece times)."""
    await engine.start()
    streams = []
    try:
        for prime, settings, stops in requests:
            stream = Stream(context_of(model, prime), settings, stops)
            engine.submit(stream)
            streams.append(stream)
            await asyncio.sleep(delay_each)
        results = []
        for stream in streams:
            pieces, lps, times = [], [], []
            while True:
                _, item = await stream.events.get()
                if isinstance(item, Done):
                    results.append((pieces, lps, item, times))
                    break
                assert isinstance(item, Piece) and len(item.log_probs) == len(item.text)
                pieces.append(item.text)
                lps += item.log_probs
                times.append(time.monotonic())
        return results
    finally:
        await engine.close()


def text_of(result) -> str:
    return "".join(result[0])


def test_each_row_is_its_own_sample_beside_others_of_every_kind(model):
    # one seeded stream, alone, then beside rows that cut (top-k, top-p), go greedy, run
    # hotter or colder, stop early, and join while it is generating
    mine = ("the ", SampleSettings(length=200, temperature=1.0, seed=7), ())
    others = [
        ("a", SampleSettings(length=150, top_k=3, seed=1), ()),
        ("an", SampleSettings(length=120, top_p=0.8, temperature=1.2, seed=2), ()),
        ("the", SampleSettings(length=90, greedy=True), ()),
        ("th", SampleSettings(length=180, temperature=0.3, seed=3), ()),
        ("e", SampleSettings(length=300, temperature=1.0, seed=4), ("e ",)),
        *[("and ", SampleSettings(length=100 + i, seed=10 + i), ()) for i in range(20)],
    ]
    alone = asyncio.run(run_streams(Engine(model.net, model.vocab, 64), [mine], model))
    crowd = asyncio.run(
        run_streams(
            Engine(model.net, model.vocab, 64),
            [*others[:12], mine, *others[12:]],
            model,
            delay_each=0.002,
        )  # fmt: skip
    )
    assert text_of(crowd[12]) == text_of(alone[0]) and len(text_of(alone[0])) == 200
    assert crowd[12][1] == pytest.approx(alone[0][1], abs=1e-5)
    # and what `charlstm sample` writes with the same prime and settings
    assert "the " + text_of(alone[0]) == draw_texts(model.net, model.vocab, "the ", mine[1])[0]
    # each neighbour is the sample it would be alone too
    for i in (0, 1, 2, 4):
        prime, settings, stops = others[i]
        single = asyncio.run(run_streams(Engine(model.net, model.vocab, 64),
                                         [(prime, settings, stops)], model))  # fmt: skip
        assert text_of(crowd[i]) == text_of(single[0])
    greedy = crowd[2]
    assert prime_free(draw_texts(model.net, model.vocab, "the", others[2][1])[0], "the") == (
        text_of(greedy)
    )
    stopped = crowd[4]
    assert "e " not in text_of(stopped) and stopped[2].finish_reason == "stop"
    assert [len(text_of(r)) for r in crowd[13:]] == [100 + i for i in range(7, 20)]


def test_arrivals_with_primes_of_one_length_are_read_together_and_write_as_alone(model):
    requests = [(prime, SampleSettings(length=60, temperature=1.0, seed=i))
                for i, prime in enumerate(["the ", "and ", "cat ", "a", "she "])]  # fmt: skip
    reads = []  # the shape of each forward the engine ran
    net_forward = model.net.forward

    def recording(ids, state=None):
        reads.append(tuple(ids.shape))
        return net_forward(ids, state)

    async def scenario():
        async with running(model, max_streams=8) as engine:
            streams = [Stream(context_of(model, p), s, ()) for p, s in requests]
            for stream in streams:  # all before the engine's next turn
                engine.submit(stream)
            texts = []
            for stream in streams:
                pieces = []
                while not isinstance(item := (await stream.events.get())[1], Done):
                    pieces.append(item.text)
                texts.append("".join(pieces))
            return texts

    model.net.forward = recording
    try:
        texts = asyncio.run(scenario())
    finally:
        del model.net.forward
    assert (3, 4) in reads  # the first three primes (a line start and 4 characters, less
    # the first step's input) in one forward, their rows apart
    for (prime, settings), text in zip(requests, texts, strict=True):
        assert prime + text == draw_texts(model.net, model.vocab, prime, settings)[0]


def prime_free(text: str, prime: str) -> str:
    assert text.startswith(prime)
    return text[len(prime) :]


def test_the_first_piece_comes_at_once_and_later_ones_are_spaced(model, monkeypatch):
    settings = SampleSettings(length=400, temperature=1.0, seed=0)
    every = asyncio.run(run_streams(Engine(model.net, model.vocab, 8, interval=0.0),
                                    [("the ", settings, ())], model))[0]  # fmt: skip
    handed = []  # the engine's clock at each piece it hands over (a reader's may lag)
    hand_over = Engine._hand_over

    def recording(stream, now, interval):
        had_text = bool(stream.ready)
        hand_over(stream, now, interval)
        if had_text and not stream.ready:
            handed.append(now)

    monkeypatch.setattr(Engine, "_hand_over", staticmethod(recording))
    spaced = asyncio.run(run_streams(Engine(model.net, model.vocab, 8, interval=0.01),
                                     [("the ", settings, ())], model))[0]  # fmt: skip
    assert text_of(spaced) == text_of(every)  # how text is cut into pieces changes no text
    assert len(every[0]) == 400  # interval 0: a piece per character
    assert len(spaced[0][0]) >= 1 and len(spaced[0]) < 400 and len(handed) == len(spaced[0])
    gaps = [b - a for a, b in zip(handed, handed[1:-1], strict=False)]
    assert min(gaps) >= 0.01 - 1e-9  # never closer than the interval (the last piece may be)


def test_a_cancelled_stream_leaves_at_the_next_step_and_a_full_engine_refuses(model):
    async def scenario():
        async with running(model, max_streams=2) as engine:
            streams = [endless(model, seed=i) for i in range(2)]
            for s in streams:
                engine.submit(s)
            with pytest.raises(Full):
                engine.submit(Stream(context_of(model, "a"), SampleSettings(length=5), ()))
            await streams[0].events.get()  # generating
            assert engine.active == 2
            streams[0].cancelled = True
            produced = streams[0].produced
            for _ in range(50):
                await asyncio.sleep(0.01)
                if engine.active == 1:
                    break
            assert engine.active == 1 and engine.served == 1
            assert streams[0].produced <= produced + 1  # no compute spent for nobody
            short = Stream(context_of(model, "a"), SampleSettings(length=5, seed=0), ())
            engine.submit(short)  # room again
            while not isinstance((await short.events.get())[1], Done):
                pass

    asyncio.run(scenario())


def test_a_finished_streams_client_finds_room_at_once_in_a_full_engine(model):
    # its row leaves the batch at the next turn, but the client may ask again before it
    async def scenario():
        async with running(model, max_streams=1) as engine:
            for round_ in range(3):
                stream = Stream(context_of(model, "a"), SampleSettings(length=5, seed=round_), ())
                engine.submit(stream)  # never Full: the last one has finished
                while not isinstance((await stream.events.get())[1], Done):
                    pass
                assert engine.active == 0

    asyncio.run(scenario())


def test_new_weights_are_taken_between_steps_and_the_stream_carries_on(model):
    uniform = -torch.log(torch.tensor(float(model.vocab.size))).item()

    async def scenario():
        async with running(model) as engine:
            stream = endless(model)
            engine.submit(stream)
            await stream.events.get()
            flat = type(model.net)(model.vocab.size, model.net.cfg)
            with torch.no_grad():
                for p in flat.parameters():
                    p.zero_()  # every character equally likely: log-prob -log(vocab)
            engine.swap(flat)
            for _ in range(100):
                _, piece = await stream.events.get()
                if piece.log_probs[-1] == pytest.approx(uniform, abs=1e-6):
                    break
            else:
                pytest.fail("the new weights were never used")
            assert engine.active == 1  # the stream in flight was not dropped
            stream.cancelled = True

    asyncio.run(scenario())


def test_draining_lets_streams_finish_then_ends_the_rest_with_their_text(model):
    async def scenario():
        async with running(model) as engine:
            forever = endless(model, stops=("never said",))
            short = Stream(context_of(model, "a"), SampleSettings(length=30, seed=1), ())
            engine.submit(forever)
            engine.submit(short)
            _, first = await forever.events.get()
            engine.drain(0.3)
            with pytest.raises(Full):  # no new stream once shutting down
                engine.submit(Stream(context_of(model, "a"), SampleSettings(length=5), ()))
            ends = {}
            for name, stream in (("short", short), ("endless", forever)):
                chars = len(first.text) if stream is forever else 0
                while True:
                    _, item = await stream.events.get()
                    if isinstance(item, Done):
                        ends[name] = (item.finish_reason, item.chars, chars)
                        break
                    chars += len(item.text)
            assert ends["short"] == ("length", 30, 30)
            reason, produced, sent = ends["endless"]
            # every character made was sent, the part held back for the stop string too
            assert reason == "abort" and produced == sent and produced > 30

    asyncio.run(scenario())


def test_a_long_prime_is_read_in_turns_and_stalls_no_one(model):
    prime = ("the cat sat on the mat and " * 80)[:2000]  # 16 turns of WARM_CHARS
    settings = SampleSettings(length=50, temperature=1.0, seed=5)

    async def scenario():
        async with running(model) as engine:
            other = endless(model, prime="a")
            engine.submit(other)
            await other.events.get()
            long = Stream(context_of(model, prime), settings, ())
            engine.submit(long)
            steps_while_reading = 0
            while long.events.empty():
                _, piece = await other.events.get()  # the other stream kept going
                steps_while_reading += len(piece.text)
            text = []
            while not isinstance(item := (await long.events.get())[1], Done):
                text.append(item.text)
            other.cancelled = True
            return steps_while_reading, "".join(text)

    steps, text = asyncio.run(scenario())
    assert steps >= 2000 // Engine.WARM_CHARS - 1  # a step (at least) between two turns
    # read in turns, the prime leaves the state `charlstm sample` reaches in one pass
    assert prime + text == draw_texts(model.net, model.vocab, prime, settings)[0]


def test_a_failed_step_ends_its_streams_with_an_error_and_the_engine_goes_on(model):
    """An unexpected error in a step ends the streams of that step (finish_reason
    "error", with why), says so in one line, and the next streams are served as ever."""
    said: list[str] = []

    async def scenario():
        engine = Engine(model.net, model.vocab, 4, interval=0.0, say=said.append)
        await engine.start()
        try:
            real, calls = engine.net, [0]

            def broken(*args):
                calls[0] += 1
                if calls[0] == 3:
                    raise RuntimeError("a bad row")
                return real(*args)

            engine.net = broken
            victim = Stream(context_of(model, "the "), SampleSettings(length=50, seed=1), (),
                            request="r-1")  # fmt: skip
            engine.submit(victim)
            while not isinstance(item := (await victim.events.get())[1], Done):
                pass
            assert item.finish_reason == "error" and "a bad row" in item.error
            assert engine.health is None and engine.failed_steps == 1
            engine.net = real
            settings = SampleSettings(length=30, seed=2)
            after = Stream(context_of(model, "the "), settings, ())
            engine.submit(after)
            text = []
            while not isinstance(item := (await after.events.get())[1], Done):
                text.append(item.text)
            assert item.finish_reason == "length"
            return "".join(text), settings
        finally:
            await engine.close()

    text, settings = asyncio.run(scenario())
    assert "the " + text == draw_texts(model.net, model.vocab, "the ", settings)[0]
    assert len(said) == 1 and "r-1" in said[0] and "the engine goes on" in said[0]
