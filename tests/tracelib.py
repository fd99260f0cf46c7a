"""Tracing on in-process, into OpenTelemetry's in-memory exporter (the tests over real
processes use ``otlplib``'s receiver)."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from llmkg import tracing
from llmkg.config import Settings, load_settings
from llmkg.tracing import sdk


def settings(sample_rate: float = 1.0) -> Settings:
    return load_settings(
        environ={
            "LLMKG__MONITORING__ENABLE_TRACING": "true",
            "LLMKG__MONITORING__SAMPLE_RATE": str(sample_rate),
        }
    )


class Traced:
    """Tracing on, into memory."""

    def __init__(self, sample_rate: float = 1.0) -> None:
        self.exporter = InMemorySpanExporter()
        sdk.setup(settings(sample_rate), exporter=self.exporter)

    def spans(self) -> list[ReadableSpan]:
        assert tracing.flush()
        return list(self.exporter.get_finished_spans())

    def names(self) -> list[str]:
        return [s.name for s in self.spans()]
