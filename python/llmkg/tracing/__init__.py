"""Tracing: OpenTelemetry spans of requests and of the engine's steps, exported over OTLP.

Off (``monitoring.enable_tracing = false``; the built-in defaults) nothing of
OpenTelemetry is imported: every ``span()`` returns one shared no-op context manager,
``inject`` adds nothing, and the server adds no middleware. On, ``llmkg.tracing.sdk.setup``
makes the tracer (see there for the sampler, the exporter and the resource).

Where traces start: at an entry, an HTTP request or an RPC call (``entry_span``). The
sampler decides there, once per trace: a caller's sampled flag (W3C ``traceparent``) is
followed, a new trace is sampled at ``monitoring.sample_rate``. Below an entry, ``span()``
makes a child only when the current span records, so that an unsampled request costs one
context look-up per step and the engine never starts traces of its own.

Propagation: ``inject`` writes the current context as ``traceparent`` (and ``tracestate``)
into an outgoing call's metadata, ``extract`` reads a caller's; gRPC interceptors built on
them are in ``llmkg.tracing_grpc``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

    from llmkg.config.schema import Settings

log = logging.getLogger("llmkg.tracing")

Kind = Literal["server", "client", "internal"]
# W3C Trace Context's headers, the only ones carried (no baggage); lower case, as gRPC
# metadata keys must be.
TRACE_HEADERS = ("traceparent", "tracestate")


class _NoSpan(contextlib.AbstractContextManager[None]):
    """The one context manager of every step while tracing is off or not sampled."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


class _Metadata(Protocol):
    """A dict of headers, or gRPC metadata (``grpc.aio.Metadata``): set by key."""

    def __setitem__(self, key: str, value: str, /) -> None: ...


class Active:
    """The tracer while tracing is on, with the OpenTelemetry functions of the hot path
    bound once (``setup`` makes it)."""

    def __init__(
        self, tracer: Tracer, flush: Callable[[], bool], shutdown: Callable[[], bool]
    ) -> None:
        from opentelemetry import propagate, trace

        self.tracer = tracer
        self.flush = flush
        self.shutdown = shutdown
        self.current_span = trace.get_current_span
        self.kinds = {
            "server": trace.SpanKind.SERVER,
            "client": trace.SpanKind.CLIENT,
            "internal": trace.SpanKind.INTERNAL,
        }
        self.inject = propagate.inject
        self.extract = propagate.extract
        self.error = trace.StatusCode.ERROR


_active: Active | None = None


def activate(active: Active | None) -> None:
    """Install (or, with None, remove) the tracer every function here uses."""
    global _active
    _active = active


def enabled() -> bool:
    return _active is not None


def start(settings: Settings) -> bool:
    """Tracing as ``[monitoring]`` says: True when on; when off, nothing is imported."""
    if not settings.monitoring.enable_tracing:
        return False
    from llmkg.tracing import sdk

    sdk.setup(settings)
    return True


def flush() -> bool:
    """Export every span ended so far (True when tracing is off)."""
    return _active is None or _active.flush()


def stop() -> None:
    """Tracing off: the spans ended so far are exported, in a bounded time (see
    ``sdk.setup``): a collector that does not answer must not hold up a stopping server."""
    active = _active
    if active is None:
        return
    activate(None)
    if not active.shutdown():
        log.warning("spans not exported in time at the stop are dropped")


def span(name: str) -> contextlib.AbstractContextManager[Span | None]:
    """A child span of the current one around a step, as the current span; the shared
    no-op context manager (yielding None) unless the current span records."""
    active = _active
    if active is None or not active.current_span().is_recording():
        return NO_SPAN
    return active.tracer.start_as_current_span(name)


def entry_span(
    name: str, parent: Context | None, kind: Kind = "server", attributes: Any = None
) -> contextlib.AbstractContextManager[Span | None]:
    """The span of a request or call arriving, as the current span: a child of ``parent``
    (the caller's, from ``extract``) or a new trace's root, sampled by the sampler. It is
    current even when not sampled, so that calls made under it pass the decision on."""
    active = _active
    if active is None:
        return NO_SPAN
    return active.tracer.start_as_current_span(
        name, context=parent, kind=active.kinds[kind], attributes=attributes
    )


def start_client_span(name: str, attributes: Any = None) -> Span | None:
    """A client span of an outgoing call, not made current (the caller ends it when the
    call completes); None unless the current span records."""
    active = _active
    if active is None or not active.current_span().is_recording():
        return None
    return active.tracer.start_span(name, kind=active.kinds["client"], attributes=attributes)


def fail(span: Span, description: str) -> None:
    """Mark ``span`` as failed (an error status with ``description``)."""
    if _active is not None:
        span.set_status(_active.error, description)


def inject(metadata: _Metadata | list[tuple[str, Any]], span: Span | None = None) -> None:
    """Write ``traceparent`` (and ``tracestate``) of ``span``, else of the current span,
    into an outgoing call's ``metadata``: a list of gRPC ``(key, value)`` pairs (appended
    to), a dict or ``grpc.aio.Metadata`` (set). Nothing while tracing is off, or when there
    is no span; an unsampled span is written too (flag 00), so the callee does not sample a
    fragment of the trace on its own."""
    active = _active
    if active is None:
        return
    context = None
    if span is not None:
        from opentelemetry.trace import set_span_in_context

        context = set_span_in_context(span)
    carrier: dict[str, str] = {}
    active.inject(carrier, context=context)
    for key, value in carrier.items():
        if isinstance(metadata, list):
            metadata.append((key, value))
        else:
            metadata[key] = value


def extract(metadata: Mapping[Any, Any] | Iterable[tuple[Any, Any]] | None) -> Context:
    """The caller's context from an incoming call's ``metadata``: a mapping, gRPC
    ``(key, value)`` pairs or ASGI's headers (names compared in lower case, bytes
    decoded); the parent to give ``entry_span``. An empty context when there is none, or
    tracing is off."""
    carrier = dict(_trace_headers(metadata))
    active = _active
    if active is None or not carrier:
        from opentelemetry.context import Context

        return Context()
    context: Context = active.extract(carrier)
    return context


def _trace_headers(
    metadata: Mapping[Any, Any] | Iterable[tuple[Any, Any]] | None,
) -> Iterator[tuple[str, str]]:
    if metadata is None:
        return
    pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
    for key, value in pairs:
        name = (key.decode("latin-1") if isinstance(key, bytes) else key).lower()
        if name in TRACE_HEADERS:
            yield name, value.decode("latin-1") if isinstance(value, bytes) else str(value)
