"""Tracing of a real server, exported over OTLP/HTTP to a real receiver on loopback: the
spans of a request continue the caller's ``traceparent``, the engine's steps are their
children; sample_rate 0 exports nothing, tracing off connects to nothing, and a collector
that hangs neither fails requests nor holds up the stop."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from otlplib import BlackHole, OtlpReceiver, ReceivedSpan
from serverlib import Server, fact, until

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-01"


def traced_server(tmp: Path, endpoint: str, **keys: str) -> Server:
    env = {
        "LLMKG__MONITORING__ENABLE_TRACING": "true",
        "LLMKG__MONITORING__SAMPLE_RATE": "1.0",
        "LLMKG__MONITORING__OTLP_ENDPOINT": endpoint,
        "LLMKG_ZONE": "zone-a",
        # Export every 50 ms (the SDK's default is 5 s), so that polls end soon.
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    env.update({f"LLMKG__MONITORING__{k.upper()}": v for k, v in keys.items()})
    return Server(tmp, env)


def of_trace(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    return next(s for s in spans if s.trace_id == TRACE_ID and s.name == name)


def test_a_request_continues_the_callers_trace_with_the_engines_steps_below(
    tmp_path: Path,
) -> None:
    with OtlpReceiver() as receiver, traced_server(tmp_path, receiver.url) as server:
        for i in (1, 2):  # the second has a candidate
            assert server.post("/api/v1/allocate", {"fact": fact(i)}).status_code == 200
        response = server.post(
            "/api/v1/search",
            {"query": {"text": "s1 p o1", "k": 3}},
            headers={"traceparent": SAMPLED, "X-Request-ID": "search-1"},
        )
        assert response.status_code == 200
        missing = server.client.get("/api/v1/nodes/999", headers={"traceparent": SAMPLED})
        assert missing.status_code == 404

        names = {"POST /api/v1/search", "GET /api/v1/nodes/{node_id}", "embed", "candidates"}
        spans = receiver.wait_for(
            lambda got: (
                names <= {s.name for s in got} and sum(s.name == "store.commit" for s in got) == 2
            )
        )

    search = of_trace(spans, "POST /api/v1/search")
    assert search.kind == "SERVER"
    assert search.parent_span_id == PARENT_ID, "a child of the caller's span"
    assert search.attributes["http.route"] == "/api/v1/search"
    assert search.attributes["http.request.method"] == "POST"
    assert search.attributes["http.response.status_code"] == 200
    assert search.attributes["llmkg.request_id"] == "search-1"
    assert not search.error
    for step in ("embed", "candidates"):
        assert of_trace(spans, step).parent_span_id == search.span_id, step
    get = of_trace(spans, "GET /api/v1/nodes/{node_id}")
    assert get.attributes["http.response.status_code"] == 404 and not get.error
    # The allocations came without a traceparent: traces of their own (sampled at 1.0).
    first, second = [s for s in spans if s.name == "POST /api/v1/allocate"]
    assert first.trace_id not in (TRACE_ID, second.trace_id)
    assert first.parent_span_id == second.parent_span_id == ""
    steps = sorted(
        sorted(s.name for s in spans if s.parent_span_id == a.span_id) for a in (first, second)
    )
    assert steps == [["candidates", "store.commit"], ["store.commit"]], steps
    resource = search.resource
    assert resource["service.name"] == "llmkg"
    assert resource["llmkg.partitions"] == [0]
    assert resource["cloud.availability_zone"] == "zone-a"
    assert resource["environment"] == "production", "monitoring.jaeger.tags"
    assert not any(s.name.startswith("GET /health") for s in spans), "probes are not traced"


def test_the_stop_exports_the_spans_still_queued(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        server = traced_server(tmp_path, receiver.url)
        server.env["OTEL_BSP_SCHEDULE_DELAY"] = "600000"  # no export for ten minutes
        server.start()
        try:
            response = server.client.get("/openapi.json", headers={"traceparent": SAMPLED})
            assert response.status_code == 200
        finally:
            assert server.stop() == 0
    assert [s.name for s in receiver.received()] == ["GET /openapi.json"]


def test_sample_rate_zero_exports_nothing(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        server = traced_server(tmp_path, receiver.url, sample_rate="0.0").start()
        try:
            assert server.post("/api/v1/allocate", {"fact": fact(1)}).status_code == 200
            unsampled = f"00-{TRACE_ID}-{PARENT_ID}-00"
            query = {"query": {"text": "s1", "k": 1}}
            response = server.post("/api/v1/search", query, headers={"traceparent": unsampled})
            assert response.status_code == 200
        finally:
            assert server.stop() == 0  # the stop exports what is queued
        assert "tracing on" in server.logs()
    assert receiver.received() == [] and receiver.posts == 0


def test_tracing_off_connects_to_nothing(tmp_path: Path) -> None:
    with OtlpReceiver() as receiver:
        server = traced_server(tmp_path, receiver.url, enable_tracing="false").start()
        try:
            response = server.post(
                "/api/v1/allocate", {"fact": fact(1)}, headers={"traceparent": SAMPLED}
            )
            assert response.status_code == 200
        finally:
            assert server.stop() == 0
        assert "tracing on" not in server.logs()
    assert receiver.connections == 0


def test_a_collector_that_hangs_fails_no_request_and_is_logged_once(tmp_path: Path) -> None:
    with BlackHole() as hole:
        server = traced_server(tmp_path, hole.url, otlp_timeout="200ms").start()
        try:
            query = {"query": {"text": "s1", "k": 1}}
            sent = 0

            def exports_failed() -> bool:
                # Requests go on while exports hang and fail (each is a new connection).
                nonlocal sent
                response = server.post("/api/v1/search", query, headers={"traceparent": SAMPLED})
                assert response.status_code == 200
                sent += 1
                return hole.connections >= 4

            until(exports_failed, what="four exports tried")
        finally:
            assert server.stop() == 0, "the stop waits for exports a bounded time"
        lines = [json.loads(line) for line in server.logs().splitlines()]
    ours = [x for x in lines if x["message"].startswith("traces cannot be exported to")]
    assert len(ours) == 1, ours
    # OpenTelemetry's own messages (their wording is the SDK's): each kind at most once.
    theirs = Counter(
        (x["logger"], x["message"][:24]) for x in lines if x["logger"].startswith("opentelemetry")
    )
    assert theirs and max(theirs.values()) == 1, theirs
    assert sent >= 4


def test_the_server_process_imports_no_opentelemetry_when_off(tmp_path: Path) -> None:
    # The server's modules, the app built and a request served in-process: OpenTelemetry
    # is neither imported nor running a thread.
    script = """
import sys, threading
from starlette.testclient import TestClient
from llmkg import tracing
from llmkg.config import load_settings
from llmkg.server.app import build_app
from llmkg.server.state import ServerState
settings = load_settings(environ={"LLMKG__STORAGE__DATA_DIRECTORY": sys.argv[1]})
assert not tracing.start(settings)
with TestClient(build_app(ServerState(settings))) as client:
    assert client.get("/openapi.json", headers={"traceparent": sys.argv[2]}).status_code == 200
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
threads = [t.name for t in threading.enumerate() if "Otel" in t.name]
print(loaded, threads)
assert not loaded and not threads
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "data"), SAMPLED],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
