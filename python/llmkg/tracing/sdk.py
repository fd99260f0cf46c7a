"""The OpenTelemetry SDK behind ``llmkg.tracing``, imported only when tracing is on.

- Sampler: ``ParentBased(TraceIdRatioBased(monitoring.sample_rate))``: a caller's decision
  is followed, a new trace is sampled at the rate.
- Export: a ``BatchSpanProcessor`` (its own thread; a full queue drops spans, never
  blocks a request) to ``monitoring.otlp_endpoint`` over OTLP/HTTP with protobuf bodies,
  each export bounded by ``monitoring.otlp_timeout``. The ``OTEL_BSP_*`` variables tune
  the processor (``OTEL_BSP_SCHEDULE_DELAY``: milliseconds between exports, 5000).
- Resource: service ``llmkg``, its version, the pod (``HOSTNAME`` in Kubernetes), the
  zone (``LLMKG_ZONE``), the partitions served, and ``monitoring.jaeger.tags``.
- OpenTelemetry's own log messages (a failing export, a full queue) reach llmkg's log once
  between two successful exports, not once per batch while a collector is down.

The tracer provider is llmkg's own, not the process-wide one, so that an application
that embeds the server or sets up OpenTelemetry itself keeps its own.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import propagate
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from llmkg import __version__
from llmkg.config.schema import Settings
from llmkg.tracing import Active, activate, stop

log = logging.getLogger("llmkg.tracing")

SERVICE_NAME = "llmkg"
TRACES_PATH = "/v1/traces"
# OpenTelemetry's loggers (the SDK's and the exporters').
OTEL_LOGGER = "opentelemetry"


def traces_url(endpoint: str) -> str:
    """The URL spans are posted to: ``endpoint`` as given when it has a path, else with
    OTLP's ``/v1/traces`` (``http://jaeger-collector:4318`` is a collector's address)."""
    parts = urlsplit(endpoint)
    if parts.path in ("", "/"):
        parts = parts._replace(path=TRACES_PATH)
    return urlunsplit(parts)


def resource_attributes(
    settings: Settings, partitions: Sequence[int], environ: Mapping[str, str]
) -> dict[str, Any]:
    """What every span of this process carries: ``monitoring.jaeger.tags``, then llmkg's
    own attributes (which win a name both set)."""
    hostname = environ.get("HOSTNAME") or socket.gethostname()
    attributes: dict[str, Any] = dict(settings.monitoring.jaeger.tags)
    attributes.update(
        {
            "service.name": SERVICE_NAME,
            "service.version": __version__,
            "service.instance.id": hostname,
            "host.name": socket.gethostname(),
            "llmkg.partitions": list(partitions),
            "llmkg.partition_count": settings.scalability.distribution.partition_count,
        }
    )
    if "KUBERNETES_SERVICE_HOST" in environ:
        attributes["k8s.pod.name"] = hostname  # a pod's HOSTNAME is its name
    if zone := environ.get("LLMKG_ZONE"):
        attributes["cloud.availability_zone"] = zone
    return attributes


class _OncePerOutage(logging.Handler):
    """Passes each kind of OpenTelemetry message (logger and format) to llmkg's log once,
    until ``reset``: an unreachable collector is one warning, not one per batch."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def emit(self, record: logging.LogRecord) -> None:
        kind = (record.name, str(record.msg))
        if kind in self.seen:
            return
        self.seen.add(kind)
        log.handle(record)  # on through llmkg's handlers, under its own logger's name

    def reset(self) -> None:
        self.seen.clear()


class _Reporting(SpanExporter):
    """The exporter, saying when exports start failing and when they work again."""

    def __init__(self, exporter: SpanExporter, target: str, messages: _OncePerOutage) -> None:
        self.exporter, self.target, self.messages = exporter, target, messages
        self.failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self.exporter.export(spans)
        if result is SpanExportResult.SUCCESS:
            if self.failing:
                log.info("traces are exported to %s again", self.target)
            self.failing = False
            self.messages.reset()
        elif not self.failing:
            self.failing = True
            log.warning(
                "traces cannot be exported to %s: spans are dropped until it answers "
                "(said once until then)",
                self.target,
            )
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


def setup(
    settings: Settings,
    partitions: Sequence[int] | None = None,
    exporter: SpanExporter | None = None,
    environ: Mapping[str, str] | None = None,
) -> Active:
    """Turn tracing on: the tracer, its sampler, processor and exporter (``exporter``
    replaces the OTLP one, e.g. in tests). ``partitions``: those this process serves
    (default: ``scalability.distribution.partition_id``)."""
    stop()  # a tracer set up before is flushed and replaced
    monitoring = settings.monitoring
    if partitions is None:
        partitions = [settings.scalability.distribution.partition_id]
    target = traces_url(monitoring.otlp_endpoint)
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=target, timeout=monitoring.otlp_timeout)
    messages = _OncePerOutage()
    otel_logger = logging.getLogger(OTEL_LOGGER)
    otel_logger.addHandler(messages)
    otel_logger.propagate = False
    resource = Resource.create(resource_attributes(settings, partitions, environ or os.environ))
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(monitoring.sample_rate)),
        resource=resource,
        shutdown_on_exit=False,  # `shutdown` bounds the wait; atexit would not
    )
    provider.add_span_processor(BatchSpanProcessor(_Reporting(exporter, target, messages)))
    propagate.set_global_textmap(TraceContextTextMapPropagator())

    def shutdown() -> bool:
        """Export what is queued and stop the processor's thread; False when that took
        longer than an export under way and one more (the rest is dropped)."""
        done = threading.Event()

        def run() -> None:
            provider.shutdown()
            done.set()

        # A thread of its own: the processor waits for an export under way (up to
        # otlp_timeout per batch) and then exports the rest; a stopping server waits
        # for it only this long.
        threading.Thread(target=run, name="llmkg-tracing-shutdown", daemon=True).start()
        finished = done.wait(2 * monitoring.otlp_timeout)
        otel_logger.removeHandler(messages)
        otel_logger.propagate = True
        return finished

    active = Active(provider.get_tracer("llmkg", __version__), provider.force_flush, shutdown)
    activate(active)
    log.info(
        "tracing on: %.0f%% of new traces sampled, exported to %s",
        100 * monitoring.sample_rate,
        target,
    )
    return active
