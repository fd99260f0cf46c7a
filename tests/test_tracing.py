"""llmkg.tracing in-process, with OpenTelemetry's in-memory exporter: the engine's steps
become spans only below a sampled entry, sampling follows the caller, propagation writes
and reads W3C traceparent, the span of an HTTP request, and the resource attributes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import Receive, Scope, Send
from tracelib import Traced

from llmkg import tracing
from llmkg.config import load_settings
from llmkg.engine import AllocationEngine, EngineConfig
from llmkg.server import logs
from llmkg.server.security import ROUTE_KEY
from llmkg.server.tracing import TracingMiddleware
from llmkg.tracing import sdk

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def traced() -> Iterator[Traced]:
    yield Traced()
    tracing.stop()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AllocationEngine]:
    with AllocationEngine(EngineConfig(dim=16, data_directory=tmp_path / "data")) as e:
        yield e


def fact(i: int) -> dict[str, object]:
    return {"subject": f"s{i}", "predicate": "p", "object": f"o{i}", "confidence": 0.5}


def test_off_every_step_is_the_shared_no_op() -> None:
    assert not tracing.enabled()
    assert tracing.span("embed") is tracing.NO_SPAN
    assert tracing.entry_span("GET /", None) is tracing.NO_SPAN
    metadata: list[tuple[str, str]] = []
    tracing.inject(metadata)
    assert metadata == []


def test_engine_steps_are_children_of_a_sampled_entry_only(
    traced: Traced, engine: AllocationEngine
) -> None:
    engine.allocate(fact(1))
    engine.search(text="s1", k=1)
    assert traced.spans() == [], "the engine starts no trace of its own"

    with tracing.entry_span("POST /api/v1/allocate", None) as entry:
        assert entry is not None
        engine.allocate(fact(2))
    with tracing.entry_span("POST /api/v1/search", None):
        engine.search(text="s2", k=1)
    spans = {s.name: s for s in traced.spans() if s.name != "candidates"}
    parents = {
        name: s.parent.span_id if s.parent else None for name, s in spans.items() if s.parent
    }
    allocate, search = spans["POST /api/v1/allocate"], spans["POST /api/v1/search"]
    assert allocate.kind == SpanKind.SERVER
    assert parents["store.commit"] == allocate.context.span_id
    assert parents["embed"] == search.context.span_id  # the search's embed, ended last
    allocation = ["POST /api/v1/allocate", "embed", "candidates", "store.commit"]
    search_steps = ["POST /api/v1/search", "embed", "candidates"]
    assert sorted(traced.names()) == sorted([*allocation, *search_steps])


def test_sampling_follows_the_caller_and_the_rate_for_new_traces() -> None:
    traced = Traced(sample_rate=0.0)
    try:
        with tracing.entry_span("new", None) as span:
            assert span is not None and not span.is_recording()
            assert tracing.span("embed") is tracing.NO_SPAN, "no child of an unsampled span"
            metadata: list[tuple[str, str]] = []
            tracing.inject(metadata)
            # Passed on as not sampled (flag bit 0 clear; bit 1 says the trace id is
            # random), so that the callee does not sample on its own.
            flags = int(dict(metadata)["traceparent"].rsplit("-", 1)[1], 16)
            assert flags & 1 == 0
        sampled = tracing.extract({"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        with tracing.entry_span("continued", sampled) as span:
            assert span is not None and span.is_recording(), "the caller's decision wins"
            with tracing.span("embed"):
                pass
        assert traced.names() == ["embed", "continued"]
        continued = traced.spans()[-1]
        assert format(continued.context.trace_id, "032x") == TRACE_ID
        assert continued.parent is not None and continued.parent.is_remote
        assert format(continued.parent.span_id, "016x") == PARENT_ID
    finally:
        tracing.stop()


def test_inject_and_extract_round_trip_through_metadata(traced: Traced) -> None:
    with tracing.entry_span("router", None, kind="internal") as span:
        assert span is not None
        pairs: list[tuple[str, str]] = [("x-other", "1")]
        tracing.inject(pairs)
        headers: dict[str, str] = {}
        tracing.inject(headers)
    assert pairs[0] == ("x-other", "1") and pairs[1][0] == "traceparent"
    expected = f"00-{format(span.get_span_context().trace_id, '032x')}-"
    assert headers["traceparent"].startswith(expected)
    # gRPC metadata (pairs), bytes included, and ASGI headers (bytes names) read alike.
    as_bytes = [(b"TraceParent", headers["traceparent"].encode())]
    for carrier in (pairs, headers, as_bytes):
        context = tracing.extract(carrier)
        with tracing.entry_span("callee", context) as child:
            assert child is not None
            assert child.get_span_context().trace_id == span.get_span_context().trace_id
    assert tracing.extract([("traceparent", "garbage")]) == tracing.extract(None)


async def _answer(status: int, scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _request(app: TracingMiddleware, path: str, route: str | None) -> None:
    scope = {"type": "http", "method": "GET", "path": path, ROUTE_KEY: route, "headers": []}
    sent: list[object] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b""}

    async def send(message: object) -> None:
        sent.append(message)

    token = logs.request_id.set("rid-1")
    try:
        asyncio.run(app(scope, receive, send))
    finally:
        logs.request_id.reset(token)


def test_a_5xx_fails_the_request_span_and_probes_are_not_traced(traced: Traced) -> None:
    _request(TracingMiddleware(lambda s, r, w: _answer(503, s, r, w)), "/api/v1/stats", "/x")
    _request(TracingMiddleware(lambda s, r, w: _answer(404, s, r, w)), "/nowhere", None)
    _request(TracingMiddleware(lambda s, r, w: _answer(200, s, r, w)), "/health/ready", "/r")
    failed, unmatched = traced.spans()
    assert failed.name == "GET /x" and failed.status.status_code == StatusCode.ERROR
    assert failed.attributes is not None and failed.attributes["llmkg.request_id"] == "rid-1"
    assert unmatched.name == "GET" and unmatched.status.status_code == StatusCode.UNSET


def test_resource_names_service_pod_zone_partitions_and_tags() -> None:
    s = load_settings(environ={"LLMKG_PARTITION_ID": "3"})
    environ = {"HOSTNAME": "llmkg-3", "KUBERNETES_SERVICE_HOST": "10.0.0.1", "LLMKG_ZONE": "b"}
    attributes = sdk.resource_attributes(s, [3], environ)
    assert attributes["service.name"] == "llmkg"
    assert attributes["k8s.pod.name"] == "llmkg-3" == attributes["service.instance.id"]
    assert attributes["cloud.availability_zone"] == "b"
    assert attributes["llmkg.partitions"] == [3] and attributes["llmkg.partition_count"] == 8
    assert attributes["environment"] == "production"
    outside = sdk.resource_attributes(s, [0], {})
    assert "k8s.pod.name" not in outside and "cloud.availability_zone" not in outside


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://jaeger-collector:4318", "http://jaeger-collector:4318/v1/traces"),
        ("https://otel.example:4318/", "https://otel.example:4318/v1/traces"),
        ("http://gw:8080/otlp/v1/traces", "http://gw:8080/otlp/v1/traces"),
    ],
)
def test_the_endpoint_gets_otlps_traces_path_when_it_has_none(endpoint: str, url: str) -> None:
    assert sdk.traces_url(endpoint) == url
