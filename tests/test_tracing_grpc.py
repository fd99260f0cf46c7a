"""llmkg.tracing_grpc with a real gRPC server and client on loopback (grpcio's threaded and
asyncio APIs): the client's span and the server's child share the trace, the handler's own
steps are below the server span, a failed call fails both spans, and an unsampled caller
passes its decision on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from tracelib import Traced

from llmkg import tracing
from llmkg.tracing_grpc import (
    aio_client_interceptors,
    aio_server_interceptors,
    client_interceptors,
    server_interceptors,
)

SERVICE = "llmkg.test.Partition"
SEEN: list[dict[str, str]] = []  # the metadata each call arrived with


def _search(request: bytes, context: grpc.ServicerContext) -> bytes:
    SEEN.append(dict(context.invocation_metadata()))  # type: ignore[arg-type]
    with tracing.span("partition.search"):
        if request == b"missing":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such node")
        return request[::-1]


async def _search_aio(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    SEEN.append(dict(context.invocation_metadata() or ()))  # type: ignore[arg-type]
    with tracing.span("partition.search"):
        if request == b"missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such node")
        return request[::-1]


def _handlers(search: object) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler(
        SERVICE, {"Search": grpc.unary_unary_rpc_method_handler(search)}
    )


@pytest.fixture
def traced() -> Iterator[Traced]:
    SEEN.clear()
    yield Traced()
    tracing.stop()


def by_name(spans: list[ReadableSpan]) -> dict[tuple[str, SpanKind], ReadableSpan]:
    return {(s.name, s.kind): s for s in spans}


def client_spans_ended(traced: Traced, count: int) -> bool:
    return sum(s.kind == SpanKind.CLIENT for s in traced.spans()) >= count


def wait_client_spans(traced: Traced, count: int) -> list[ReadableSpan]:
    """The spans once ``count`` client spans ended: a call's span ends in its done
    callback, which may run just after the caller has the answer."""
    deadline = time.monotonic() + 10
    while not client_spans_ended(traced, count):
        assert time.monotonic() < deadline, traced.names()
        time.sleep(0.01)
    return traced.spans()


async def wait_client_spans_aio(traced: Traced, count: int) -> list[ReadableSpan]:
    deadline = time.monotonic() + 10
    while not client_spans_ended(traced, count):
        assert time.monotonic() < deadline, traced.names()
        await asyncio.sleep(0.01)
    return traced.spans()


def check_fan_out(spans: list[ReadableSpan]) -> None:
    """router -> client span -> server span -> the handler's step, one trace."""
    named = by_name(spans)
    router = named[("router", SpanKind.INTERNAL)]
    client = named[(f"{SERVICE}/Search", SpanKind.CLIENT)]
    server = named[(f"{SERVICE}/Search", SpanKind.SERVER)]
    step = named[("partition.search", SpanKind.INTERNAL)]
    trace_id = router.context.trace_id
    assert {s.context.trace_id for s in (client, server, step)} == {trace_id}
    assert client.parent is not None and client.parent.span_id == router.context.span_id
    assert server.parent is not None and server.parent.span_id == client.context.span_id
    assert server.parent.is_remote, "continued from the call's metadata"
    assert step.parent is not None and step.parent.span_id == server.context.span_id
    assert server.attributes is not None and server.attributes["rpc.method"] == "Search"
    assert server.attributes["rpc.grpc.status_code"] == 0


def check_failure(spans: list[ReadableSpan]) -> None:
    named = by_name(spans)
    for kind in (SpanKind.CLIENT, SpanKind.SERVER):
        span = named[(f"{SERVICE}/Search", kind)]
        assert span.status.status_code == StatusCode.ERROR, kind
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


def test_threaded_client_and_server_share_the_trace(traced: Traced) -> None:
    server = grpc.server(ThreadPoolExecutor(2), interceptors=server_interceptors())
    server.add_generic_rpc_handlers([_handlers(_search)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            channel = grpc.intercept_channel(plain, *client_interceptors())
            search = channel.unary_unary(f"/{SERVICE}/Search")
            with tracing.entry_span("router", None, kind="internal"):
                assert search(b"abc", timeout=10) == b"cba"
            check_fan_out(wait_client_spans(traced, 1))

            traced.exporter.clear()
            with tracing.entry_span("router", None, kind="internal"):
                with pytest.raises(grpc.RpcError) as failed:
                    search(b"missing", timeout=10)
            assert failed.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
            check_failure(wait_client_spans(traced, 1))

            traced.exporter.clear()
            with tracing.entry_span("router", None, kind="internal"):
                future = search.future(b"xyz", timeout=10)
            assert future.result() == b"zyx"
            # The client span of a future ends when the call does, after the router's.
            check_fan_out(wait_client_spans(traced, 1))
    finally:
        server.stop(None)


def test_asyncio_client_and_server_share_the_trace(traced: Traced) -> None:
    async def run() -> None:
        server = grpc.aio.server(interceptors=aio_server_interceptors())
        server.add_generic_rpc_handlers([_handlers(_search_aio)])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            target = f"127.0.0.1:{port}"
            async with grpc.aio.insecure_channel(
                target, interceptors=aio_client_interceptors()
            ) as channel:
                search = channel.unary_unary(f"/{SERVICE}/Search")
                with tracing.entry_span("router", None, kind="internal"):
                    # The fan-out: calls at once, each a child of the router's span.
                    answers = await asyncio.gather(search(b"abc"), search(b"def"))
                assert answers == [b"cba", b"fed"]
                spans = await wait_client_spans_aio(traced, 2)
                routers = {s.context.trace_id for s in spans if s.name == "router"}
                assert {s.context.trace_id for s in spans} == routers, "one trace"
                check_fan_out(spans)

                traced.exporter.clear()
                with tracing.entry_span("router", None, kind="internal"):
                    with pytest.raises(grpc.aio.AioRpcError):
                        await search(b"missing")
                check_failure(await wait_client_spans_aio(traced, 1))
        finally:
            await server.stop(None)

    asyncio.run(run())


def test_an_unsampled_caller_passes_its_decision_on() -> None:
    SEEN.clear()
    traced = Traced(sample_rate=0.0)
    server = grpc.server(ThreadPoolExecutor(2), interceptors=server_interceptors())
    server.add_generic_rpc_handlers([_handlers(_search)])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            channel = grpc.intercept_channel(plain, *client_interceptors())
            with tracing.entry_span("router", None, kind="internal") as router:
                assert router is not None
                assert channel.unary_unary(f"/{SERVICE}/Search")(b"abc", timeout=10) == b"cba"
        assert traced.spans() == []
        trace_id = format(router.get_span_context().trace_id, "032x")
        assert SEEN[0]["traceparent"].split("-")[1] == trace_id
        assert int(SEEN[0]["traceparent"].split("-")[3], 16) & 1 == 0, "not sampled"
    finally:
        server.stop(None)
        tracing.stop()


def test_off_there_are_no_interceptors() -> None:
    assert not tracing.enabled()
    assert client_interceptors() == server_interceptors() == []
    assert aio_client_interceptors() == aio_server_interceptors() == []
