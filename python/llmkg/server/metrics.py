"""Prometheus metrics, on their own listener (``server.metrics_port``).

The names are the ones the scrape config and the dashboard read:
``llmkg_allocation_latency_seconds``, ``llmkg_hnsw_search_time_seconds`` (histograms),
``llmkg_cache_hit_rate{cache_level}``, ``llmkg_memory_usage_bytes``,
``llmkg_hnsw_memory_bytes`` (gauges); plus requests by route and status, the outcome of
index checkpoints (``llmkg_checkpoint_failures_total``,
``llmkg_checkpoint_last_success_timestamp_seconds``), on a shared PostgreSQL store the
follower's ``llmkg_follow_lag`` (sequence numbers not yet applied), and the process
collector. Gauges are read from the engine when Prometheus scrapes, never kept twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    Summary,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from llmkg.engine.quantization import resident_bytes

if TYPE_CHECKING:
    from llmkg.config import Settings
    from llmkg.engine import AllocationEngine

# Request latencies need finer buckets than the config's (which are the allocation's).
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class EngineCollector(Collector):
    """Gauges read from the engine at scrape time (none before it has loaded). On a
    partitioned graph ``engines`` gives every hosted partition's engine: the node count
    is their sum and the follower's lag is per partition; the rest is ``engine``'s."""

    def __init__(
        self,
        engine: Callable[[], AllocationEngine | None],
        engines: Callable[[], Mapping[int, AllocationEngine]] = dict,
    ) -> None:
        self.engine = engine
        self.engines = engines

    def collect(self) -> Iterator[Metric]:
        resident = GaugeMetricFamily(
            "llmkg_memory_usage_bytes", "Resident memory of the server process"
        )
        resident.add_metric([], float(resident_bytes() or 0))
        yield resident
        engine = self.engine()
        if engine is None:
            return
        stats = engine.stats()
        hnsw = GaugeMetricFamily("llmkg_hnsw_memory_bytes", "Memory held by the HNSW index")
        hnsw.add_metric([], float(stats["index"]["memory_bytes"]))
        yield hnsw
        budget = GaugeMetricFamily(
            "llmkg_memory_budget_bytes", "Memory budget of adaptive precision"
        )
        budget.add_metric([], float(stats["memory"]["budget_bytes"]))
        yield budget
        hosted = self.engines() or {engine.config.partition: engine}
        nodes = GaugeMetricFamily("llmkg_nodes", "Live nodes in this server's partitions")
        nodes.add_metric([], float(sum(len(e.index) for e in hosted.values())))
        yield nodes
        hit_rate = GaugeMetricFamily(
            "llmkg_cache_hit_rate", "Hit rate of a node-record cache tier", labels=["cache_level"]
        )
        if stats["cache"]["enabled"]:
            for level in ("l1", "l2"):
                hit_rate.add_metric([level], float(stats["cache"][f"{level}_hit_rate"]))
        yield hit_rate
        checkpoint = engine.checkpoints.status()
        failures = CounterMetricFamily(
            "llmkg_checkpoint_failures", "Index checkpoints that failed (e.g. disk full)"
        )
        failures.add_metric([], float(checkpoint.failures_total))
        yield failures
        last = GaugeMetricFamily(
            "llmkg_checkpoint_last_success_timestamp_seconds",
            "When an index checkpoint last succeeded (the engine's start before the first)",
        )
        last.add_metric([], checkpoint.last_success)
        yield last
        inserts, store = stats["inserts"], stats["store"]
        pending = GaugeMetricFamily(
            "llmkg_linker_pending_nodes", "Nodes committed, not yet linked into the index"
        )
        pending.add_metric([], float(inserts["pending"]))
        yield pending
        failing = GaugeMetricFamily(
            "llmkg_linker_failing", "1 while the index linker fails its links in a row"
        )
        failing.add_metric([], float(inserts["failing"]))
        yield failing
        failed_links = CounterMetricFamily(
            "llmkg_linker_failed_links", "Links into the index that failed (then retried)"
        )
        failed_links.add_metric([], float(inserts["failed_links"]))
        yield failed_links
        follow = stats["follow"]
        if follow is not None:
            lag = GaugeMetricFamily(
                "llmkg_follow_lag",
                "Sequence numbers a partition of this server has not applied yet behind "
                "the database's last",
                labels=["partition"],
            )
            for partition, e in sorted(hosted.items()):
                if e.follower is not None:
                    lag.add_metric([str(partition)], float(e.follower.lag))
            yield lag
            stale = CounterMetricFamily(
                "llmkg_stale_reads",
                "Reads answered from this server's copy while the database was unreachable",
            )
            stale.add_metric([], float(follow["stale_reads"]))
            yield stale
        failed_writes = CounterMetricFamily(
            "llmkg_store_failed_writes", "Writes refused because the store could not commit"
        )
        failed_writes.add_metric([], float(store["failed_writes"]))
        yield failed_writes


class Metrics:
    def __init__(
        self,
        settings: Settings,
        engine: Callable[[], AllocationEngine | None],
        engines: Callable[[], Mapping[int, AllocationEngine]] = dict,
    ) -> None:
        prometheus = settings.monitoring.prometheus
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(EngineCollector(engine, engines))
        buckets = tuple(prometheus.histogram_buckets)

        def latency(
            name: str, doc: str, labels: tuple[str, ...] = (), b: tuple[float, ...] = buckets
        ) -> Histogram | Summary:
            # enable_histogram = false: count and sum only, no buckets
            if prometheus.enable_histogram:
                return Histogram(name, doc, labels, buckets=b, registry=self.registry)
            return Summary(name, doc, labels, registry=self.registry)

        self.allocation_latency = latency(
            "llmkg_allocation_latency_seconds", "Time to allocate one fact"
        )
        self.search_time = latency(
            "llmkg_hnsw_search_time_seconds", "Time of one index search (candidates)"
        )
        self.request_duration = latency(
            "llmkg_http_request_duration_seconds",
            "HTTP request latency by route",
            ("route", "method"),
            REQUEST_BUCKETS,
        )
        self.searches_deferred = Counter(
            "llmkg_searches_deferred",
            "Searches meant for the event loop handed to a worker: a writer held the index",
            registry=self.registry,
        )
        self.requests = Counter(
            "llmkg_http_requests",
            "HTTP requests by route, method and status",
            ("route", "method", "status"),
            registry=self.registry,
        )

    def app(self, path: str) -> Starlette:
        """The metrics listener's app: ``path`` only (no auth: the NetworkPolicy restricts it)."""

        async def scrape(request: Request) -> Response:
            body = await run_in_threadpool(generate_latest, self.registry)
            return Response(body, media_type=CONTENT_TYPE_LATEST)

        return Starlette(routes=[Route(path, scrape, methods=["GET"])])
