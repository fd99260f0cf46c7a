"""A search through PeerPool and PartitionServer with tracing on: the router's span, the
call's client span and the server's span of the partition's handler are one trace
(llmkg.tracing_grpc's interceptors, which the partition service takes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from opentelemetry.trace import SpanKind
from partitionlib import LIMITS, ScriptedHandlers, address, vector
from tracelib import Traced

from llmkg import tracing
from llmkg.partition import PartitionServer, PeerPool, PeerSpec
from llmkg.tracing_grpc import aio_client_interceptors, server_interceptors

METHOD = "llmkg.partition.v1.Partition/Search"


@pytest.fixture
def traced() -> Iterator[Traced]:
    yield Traced()
    tracing.stop()


def test_a_partition_call_continues_the_routers_trace(traced: Traced) -> None:
    server = PartitionServer(
        ScriptedHandlers("pod-1", [0]),
        LIMITS,
        "127.0.0.1:0",
        interceptors=server_interceptors(),
    )
    server.start()
    try:

        async def body() -> None:
            pool = PeerPool(
                interceptors=aio_client_interceptors(),
                peers=[PeerSpec(address(server), "", frozenset({0}))],
            )
            with tracing.entry_span("router", None, kind="internal"):
                await pool.fan_out_search(vector(), 1)
            await pool.close()

        asyncio.run(body())
        deadline = time.monotonic() + 10
        while not any(s.kind == SpanKind.CLIENT for s in traced.spans()):
            assert time.monotonic() < deadline, traced.names()  # poll: ends in a callback
            time.sleep(0.01)
    finally:
        server.stop(None)
    named = {(s.name, s.kind): s for s in traced.spans()}
    router = named[("router", SpanKind.INTERNAL)]
    client = named[(METHOD, SpanKind.CLIENT)]
    served = named[(METHOD, SpanKind.SERVER)]
    assert client.parent is not None and client.parent.span_id == router.context.span_id
    assert served.parent is not None and served.parent.span_id == client.context.span_id
    assert served.context.trace_id == router.context.trace_id
