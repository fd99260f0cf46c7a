"""gRPC interceptors that carry the trace on every call between pods.

The client's puts the current context into a call's metadata as W3C ``traceparent``
(``llmkg.tracing.inject``), under a client span when the current span records; the
server's continues it (``extract``) in a server span around the handler, so that one
search shows its fan-out to the partitions as child spans. Both follow OpenTelemetry's RPC
conventions: span ``package.Service/Method``, attributes ``rpc.system``, ``rpc.service``,
``rpc.method`` and ``rpc.grpc.status_code``; a status other than OK fails the span.

For grpcio's threaded API (``client_interceptors``, ``server_interceptors``) and its
asyncio API (``aio_client_interceptors``, ``aio_server_interceptors``). Each returns an
empty list while tracing is off, so that a process without tracing pays nothing per call:
build channels and servers after ``llmkg.tracing.start``. Calls with a unary request are
traced (unary-unary and unary-stream, what a partition's calls are); streamed requests,
and the asyncio server's handlers that are not ``async def``, pass through untraced.

Why not ``opentelemetry-instrumentation-grpc``: it is a beta (0.x) package released in
lock-step with one SDK version, brings ``wrapt`` and the instrumentation framework, reads
the process-wide tracer provider that llmkg does not set, and would start traces of its
own below an unsampled request; these interceptors are small and share the sampling and
propagation of the HTTP spans.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from llmkg import tracing

if TYPE_CHECKING:
    from opentelemetry.trace import Span


def client_interceptors() -> list[grpc.UnaryUnaryClientInterceptor]:
    """For ``grpc.intercept_channel(channel, *client_interceptors())``."""
    return [ClientInterceptor()] if tracing.enabled() else []


def server_interceptors() -> list[grpc.ServerInterceptor]:
    """For ``grpc.server(pool, interceptors=server_interceptors())``."""
    return [ServerInterceptor()] if tracing.enabled() else []


def aio_client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    """For ``grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors())``."""
    return [AioClientInterceptor()] if tracing.enabled() else []


def aio_server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """For ``grpc.aio.server(interceptors=aio_server_interceptors())``."""
    return [AioServerInterceptor()] if tracing.enabled() else []


def _name(method: str | bytes) -> tuple[str, dict[str, str]]:
    """The span name and attributes of ``/package.Service/Method``."""
    path = method.decode() if isinstance(method, bytes) else method
    service, _, name = path.lstrip("/").rpartition("/")
    return path.lstrip("/"), {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _end(span: Span, code: grpc.StatusCode | None) -> None:
    code = code or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        tracing.fail(span, code.name)
    span.end()


# ---- the threaded API ------------------------------------------------------------------


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class ClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def _intercept(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        name, attributes = _name(details.method)
        span = tracing.start_client_span(name, attributes)
        metadata = list(details.metadata or ())
        tracing.inject(metadata, span)
        new_details = _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )
        try:
            call = continuation(new_details, request)
        except grpc.RpcError as e:
            if span is not None:
                _end(span, e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN)
            raise
        if span is not None:
            # A blocking call is done here; a future or a stream ends the span when done.
            call.add_done_callback(lambda done: _end(span, done.code()))
        return call

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return self._intercept(continuation, client_call_details, request)

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return self._intercept(continuation, client_call_details, request)


def _finish(span: Span | None, context: Any) -> None:
    if span is not None and span.is_recording():
        code = context.code() if hasattr(context, "code") else None
        code = code or grpc.StatusCode.OK
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        if code is not grpc.StatusCode.OK:
            tracing.fail(span, code.name)


class ServerInterceptor(grpc.ServerInterceptor):
    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        name, attributes = _name(handler_call_details.method)
        metadata = handler_call_details.invocation_metadata

        if handler.response_streaming:
            stream = handler.unary_stream
            assert stream is not None

            def traced_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                with tracing.entry_span(name, tracing.extract(metadata), "server", attributes) as s:
                    try:
                        yield from stream(request, context)
                    finally:
                        _finish(s, context)

            return grpc.unary_stream_rpc_method_handler(
                traced_stream, handler.request_deserializer, handler.response_serializer
            )

        unary = handler.unary_unary
        assert unary is not None

        def traced(request: Any, context: grpc.ServicerContext) -> Any:
            with tracing.entry_span(name, tracing.extract(metadata), "server", attributes) as s:
                try:
                    return unary(request, context)
                finally:
                    _finish(s, context)

        return grpc.unary_unary_rpc_method_handler(
            traced, handler.request_deserializer, handler.response_serializer
        )


# ---- the asyncio API -------------------------------------------------------------------


async def _end_aio(span: Span, call: grpc.aio.Call) -> None:
    try:
        code = await call.code()
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
    _end(span, code)


class AioClientInterceptor(
    grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor
):
    async def _intercept(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        name, attributes = _name(details.method)
        span = tracing.start_client_span(name, attributes)
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        tracing.inject(metadata, span)
        new_details = grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )
        call = await continuation(new_details, request)
        if span is not None:
            # The status is a coroutine's answer: read once the call is done, in a task.
            tasks: set[asyncio.Task[None]] = set()

            def done(finished: Any) -> None:
                task = asyncio.ensure_future(_end_aio(span, finished))
                tasks.add(task)  # held until it ends (the loop keeps only weak references)
                task.add_done_callback(tasks.discard)

            call.add_done_callback(done)
        return call

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await self._intercept(continuation, client_call_details, request)


class AioServerInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler: grpc.RpcMethodHandler[Any, Any] = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        name, attributes = _name(handler_call_details.method)
        metadata = handler_call_details.invocation_metadata

        if handler.response_streaming:
            stream: Any = handler.unary_stream
            if not inspect.isasyncgenfunction(stream):
                return handler

            async def traced_stream(request: Any, context: Any) -> AsyncIterator[Any]:
                with tracing.entry_span(name, tracing.extract(metadata), "server", attributes) as s:
                    try:
                        async for response in stream(request, context):
                            yield response
                    finally:
                        _finish(s, context)

            return grpc.unary_stream_rpc_method_handler(
                traced_stream, handler.request_deserializer, handler.response_serializer
            )

        unary: Any = handler.unary_unary
        if not inspect.iscoroutinefunction(unary):
            return handler

        async def traced(request: Any, context: Any) -> Any:
            with tracing.entry_span(name, tracing.extract(metadata), "server", attributes) as s:
                try:
                    return await unary(request, context)
                finally:
                    _finish(s, context)

        return grpc.unary_unary_rpc_method_handler(
            traced, handler.request_deserializer, handler.response_serializer
        )
