"""The partition calls' metrics, in the server's registry (``llmkg.server.metrics``):

- ``llmkg_partition_requests_total{peer,method,code}``: calls to peers, by the status
  code of each attempt (a retried call counts once per attempt);
- ``llmkg_partition_request_seconds{method}``: the time of each attempt (a histogram, or
  a summary without buckets when ``monitoring.prometheus.enable_histogram`` is off);
- ``llmkg_circuit_breaker_state{peer}``: 0 closed, 1 half-open, 2 open; read from the
  breakers when Prometheus scrapes (a removed peer's series goes with it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, Summary
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from llmkg.partition.breaker import BreakerState
from llmkg.server.metrics import REQUEST_BUCKETS

if TYPE_CHECKING:
    from llmkg.config import Settings


class BreakerCollector(Collector):
    def __init__(self, breakers: Callable[[], Iterable[tuple[str, BreakerState]]]) -> None:
        self.breakers = breakers

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "llmkg_circuit_breaker_state",
            "Circuit breaker of a peer: 0 closed, 1 half-open, 2 open",
            labels=["peer"],
        )
        for peer, state in self.breakers():
            gauge.add_metric([peer], float(state))
        yield gauge


class PartitionMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        histogram: bool = True,
        buckets: tuple[float, ...] = REQUEST_BUCKETS,
    ) -> None:
        self.registry = registry
        self.requests = Counter(
            "llmkg_partition_requests",
            "Calls to peer partitions by peer, method and status code (one per attempt)",
            ("peer", "method", "code"),
            registry=registry,
        )
        doc = "Time of one call to a peer partition, by method"
        self.seconds: Histogram | Summary
        if histogram:
            self.seconds = Histogram(
                "llmkg_partition_request_seconds",
                doc,
                ("method",),
                buckets=buckets,
                registry=registry,
            )
        else:
            self.seconds = Summary(
                "llmkg_partition_request_seconds", doc, ("method",), registry=registry
            )

    @classmethod
    def from_settings(cls, settings: Settings, registry: CollectorRegistry) -> PartitionMetrics:
        return cls(registry, histogram=settings.monitoring.prometheus.enable_histogram)

    def observe(self, peer: str, method: str, code: str, seconds: float) -> None:
        self.requests.labels(peer, method, code).inc()
        self.seconds.labels(method).observe(seconds)

    def watch(self, breakers: Callable[[], Iterable[tuple[str, BreakerState]]]) -> None:
        """Export the states of the breakers that ``breakers`` lists at each scrape."""
        self.registry.register(BreakerCollector(breakers))
