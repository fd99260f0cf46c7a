"""The clients' retries and streams against a tiny real HTTP server on loopback that
answers from a script (503 then 200, a Retry-After as a date, plain text...): which calls
are retried, how long each wait is, where they stop, and what is never retried. The
sleeps are injected: they record the waits and move an injected clock."""

from __future__ import annotations

import email.utils
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import llmkg
from llmkg.client import (
    ApiConnectionError,
    ApiError,
    RetryPolicy,
    ServerError,
    UnavailableError,
    calls,
)
from llmkg.client.errors import retry_after_seconds
from llmkg.engine.exchange import ExportedFact

SEARCH_ANSWER = {
    "results": [
        {
            "node_id": 7,
            "score": 0.5,
            "fact": {"subject": "a", "predicate": "b", "object": "c", "confidence": 0.5},
            "parent": None,
        }
    ]
}
NODE = {"node_id": 7, "fact": SEARCH_ANSWER["results"][0]["fact"], "parent": None}


@dataclass
class Answer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: int | None = None  # the Content-Length sent, if not the body's: a cut answer
    # Sends the body's first line, then the rest once this is set (or after GATE seconds).
    gate: threading.Event | None = None


GATE = 30.0


def json_answer(status: int, body: object, **headers: str) -> Answer:
    return Answer(
        status, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
    )


def unavailable(**headers: str) -> Answer:
    error = {"error": {"code": "store_unavailable", "message": "the store cannot be reached"}}
    return json_answer(503, error, **headers)


class Stub:
    """Answers each request with the next scripted answer (a 500 when none is left) and
    records what it was asked."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.seen: list[tuple[str, str]] = []
        self.gate_timed_out = False
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                stub.seen.append((self.command, self.path))
                answer = stub.script.pop(0) if stub.script else Answer(500, b"script ended")
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                length = len(answer.body) if answer.length is None else answer.length
                self.send_header("Content-Length", str(length))
                self.end_headers()
                body = answer.body
                if answer.gate is not None:
                    first = body.index(b"\n") + 1
                    self.wfile.write(body[:first])
                    stub.gate_timed_out = not answer.gate.wait(GATE)
                    body = body[first:]
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = answer  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)

    def play(self, *answers: Answer) -> None:
        self.script[:] = answers
        self.seen.clear()
        self.gate_timed_out = False


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    s = Stub()
    s.thread.start()
    yield s
    s.http.shutdown()
    s.http.server_close()
    s.thread.join(10)


class FakeTime:
    def __init__(self) -> None:
        self.now = 50.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def client(stub: Stub, time: FakeTime, **kw: object) -> llmkg.Client:
    return llmkg.Client(stub.url, clock=time.clock, sleep=time.sleep, **kw)  # type: ignore[arg-type]


LOW = RetryPolicy(backoff=0.2, jitter=lambda: 0.0)  # waits of half the backoff: 0.1, 0.2, 0.4


def test_503_then_200_waits_the_retry_after(stub: Stub) -> None:
    time = FakeTime()
    stub.play(unavailable(**{"Retry-After": "3"}), json_answer(200, SEARCH_ANSWER))
    with client(stub, time) as c:
        hits = c.search(text="x")
    assert [h.node.subject for h in hits] == ["a"]
    assert time.waits == [3.0] and len(stub.seen) == 2


def test_without_retry_after_the_waits_double_with_jitter(stub: Stub) -> None:
    time = FakeTime()
    stub.play(unavailable(), unavailable(), unavailable(), json_answer(200, NODE))
    with client(stub, time, retry=LOW) as c:
        node = c.get(7)
    assert node is not None and node.node_id == 7
    assert time.waits == pytest.approx([0.1, 0.2, 0.4])


def test_jitter_stays_between_half_and_all_of_the_backoff() -> None:
    policy = RetryPolicy(backoff=1.0, max_backoff=4.0)
    for retry, base in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 4.0)]:
        waits = [policy.wait(retry, None) for _ in range(200)]
        assert all(base / 2 <= w <= base for w in waits)
        assert max(waits) - min(waits) > base / 10  # spread, not one value
    assert policy.wait(0, 30.0) == 30.0  # never sooner than Retry-After


def test_a_retry_after_date_is_honoured(stub: Stub) -> None:
    time = FakeTime()
    when = email.utils.formatdate(timeval=1_000_000_060, usegmt=True)
    assert retry_after_seconds(when, now=1_000_000_000) == 60.0
    assert retry_after_seconds("soon") is None and retry_after_seconds("-5") == 0.0
    later = email.utils.formatdate(usegmt=True)  # now: wait the backoff only
    stub.play(unavailable(**{"Retry-After": later}), json_answer(200, NODE))
    with client(stub, time, retry=LOW) as c:
        assert c.get(7) is not None
    assert len(time.waits) == 1 and time.waits[0] <= 1.0


def test_retries_are_bounded_by_count(stub: Stub) -> None:
    time = FakeTime()
    stub.play(*[unavailable(**{"Retry-After": "1"})] * 10)
    with client(stub, time, retry=RetryPolicy(max_retries=2)) as c:
        with pytest.raises(UnavailableError) as raised:
            c.allocate({"subject": "a", "predicate": "b", "object": "c", "confidence": 0.5})
    assert time.waits == [1.0, 1.0] and len(stub.seen) == 3
    error = raised.value
    assert (error.status, error.code, error.retry_after) == (503, "store_unavailable", 1.0)
    assert isinstance(error, ServerError)


def test_a_retry_after_past_the_deadline_is_not_waited(stub: Stub) -> None:
    time = FakeTime()
    stub.play(unavailable(**{"Retry-After": "120"}), json_answer(200, NODE))
    with client(stub, time, timeout=60) as c:
        with pytest.raises(UnavailableError):
            c.get(7)
    assert time.waits == [] and len(stub.seen) == 1


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda c: c.delete(7), id="delete"),
        pytest.param(lambda c: c.checkpoint(), id="checkpoint"),
        pytest.param(lambda c: c.backup(), id="backup"),
    ],
)
def test_calls_that_are_not_idempotent_are_not_retried(stub: Stub, send: object) -> None:
    time = FakeTime()
    stub.play(
        unavailable(**{"Retry-After": "1"}), json_answer(200, {"node_id": 7, "deleted": True})
    )
    with client(stub, time) as c:
        with pytest.raises(UnavailableError):
            send(c)  # type: ignore[operator]
    assert time.waits == [] and len(stub.seen) == 1


def test_other_5xx_are_not_retried(stub: Stub) -> None:
    time = FakeTime()
    error = {"error": {"code": "internal", "message": "internal error"}}
    stub.play(json_answer(500, error), json_answer(200, NODE))
    with client(stub, time) as c:
        with pytest.raises(ServerError) as raised:
            c.get(7)
    assert not isinstance(raised.value, UnavailableError) and raised.value.code == "internal"
    assert time.waits == [] and len(stub.seen) == 1


def test_answers_that_are_not_the_apis(stub: Stub) -> None:
    time = FakeTime()
    # uvicorn's own 503 past server.max_connections is plain text, without Retry-After.
    stub.play(Answer(503, b"Service Unavailable"), Answer(200, b"<html>a proxy</html>"))
    with client(stub, time, retry=LOW) as c:
        with pytest.raises(ApiError) as raised:
            c.get(7)
    assert time.waits == [0.1]
    assert (raised.value.status, raised.value.code) == (200, "invalid_response")
    stub.play(Answer(503, b"Service Unavailable"))
    with client(stub, time, retry=RetryPolicy(max_retries=0)) as c:
        with pytest.raises(UnavailableError) as unavailable_error:
            c.ready()  # a probe's 503 is its answer, unless it is not the probe's body
    assert unavailable_error.value.code == "unavailable"
    assert unavailable_error.value.message == "Service Unavailable"


def test_an_expanded_search_answered_without_its_expansion(stub: Stub) -> None:
    stub.play(json_answer(200, SEARCH_ANSWER))  # a plain search's answer
    with client(stub, FakeTime()) as c, pytest.raises(ApiError) as raised:
        c.search(text="x", expand={"hops": 2})
    assert (raised.value.status, raised.value.code) == (200, "invalid_response")
    assert "expansion" in raised.value.message


def test_a_not_ready_probe_is_an_answer(stub: Stub) -> None:
    time = FakeTime()
    body = {"status": "not_ready", "checks": {"store": {"ok": False, "detail": "down"}}}
    stub.play(json_answer(503, body, **{"Retry-After": "1"}))
    with client(stub, time) as c:
        health = c.ready()
    assert not health.ok and health.checks["store"].detail == "down" and time.waits == []


# ---- streams (NDJSON) ----------------------------------------------------------------------

LINES = json.dumps({**NODE, "node_id": 1}).encode() + b"\n\n"  # a blank line is skipped


def ndjson_call() -> calls.Call[object]:
    # The shape an NDJSON route takes: a call whose decoder reads one line.
    return calls.Call("GET", "/api/v1/stream", calls.get(1).decode)


def test_a_stream_is_retried_before_its_first_line(stub: Stub) -> None:
    time = FakeTime()
    stub.play(unavailable(**{"Retry-After": "2"}), Answer(200, LINES * 3))
    with client(stub, time) as c:
        nodes = list(c._stream(ndjson_call()))
    assert [n.node_id for n in nodes] == [1, 1, 1]  # type: ignore[attr-defined]
    assert time.waits == [2.0] and len(stub.seen) == 2
    stub.play(Answer(200, LINES + b"not json\n"))
    with client(stub, time) as c, pytest.raises(ApiError) as raised:
        list(c._stream(ndjson_call()))
    assert raised.value.code == "invalid_response"


EXPORTED = b"".join(
    json.dumps(
        {
            "id": i,
            "subject": "a",
            "predicate": "b",
            "object": "c",
            "confidence": 0.5,
            "parent": None,
        }
    ).encode()
    + b"\n"
    for i in (1, 2, 3)
)


def test_an_export_is_read_as_it_arrives(stub: Stub) -> None:
    gate = threading.Event()
    stub.play(Answer(200, EXPORTED, gate=gate))
    with client(stub, FakeTime()) as c:
        facts = c.export()
        first = next(facts)  # while the server holds the rest back
        gate.set()
        rest = list(facts)
    assert isinstance(first, ExportedFact) and first.id == 1 and first.embedding is None
    assert [f.id for f in rest] == [2, 3]
    assert not stub.gate_timed_out, "the client waited for the whole answer"


def test_an_export_is_retried_before_its_first_fact_only(stub: Stub) -> None:
    time = FakeTime()
    cut = Answer(200, EXPORTED, length=len(EXPORTED) + 100)  # the connection ends early
    stub.play(unavailable(**{"Retry-After": "2"}), cut, Answer(200, EXPORTED))
    got: list[int] = []
    with client(stub, time) as c, pytest.raises(ApiConnectionError):
        for f in c.export(embedding=True):
            got.append(f.id)
    assert got == [1, 2, 3] and time.waits == [2.0]
    assert stub.seen == [("GET", "/api/v1/export?embedding=true")] * 2


@pytest.mark.anyio
async def test_async_retries_and_streams(stub: Stub) -> None:
    time = FakeTime()
    stub.play(unavailable(**{"Retry-After": "2"}), json_answer(200, NODE))
    async with llmkg.AsyncClient(stub.url, clock=time.clock, sleep=time.async_sleep) as c:
        node = await c.get(7)
        assert node is not None and time.waits == [2.0]
        stub.play(unavailable(**{"Retry-After": "1"}), json_answer(200, {}))
        with pytest.raises(UnavailableError):
            await c.delete(7)
        assert time.waits == [2.0]
        stub.play(unavailable(**{"Retry-After": "3"}), Answer(200, LINES * 2))
        nodes = [n async for n in c._stream(ndjson_call())]
    assert len(nodes) == 2 and time.waits == [2.0, 3.0]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
