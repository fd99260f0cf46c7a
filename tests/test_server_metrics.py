"""The metrics listener: the names the dashboard reads, histograms that move, and
the listener off when ``enable_metrics = false``."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from serverlib import Server, fact


def scrape(server: Server, path: str = "/metrics") -> str:
    response = httpx.get(server.metrics_url + path, timeout=10)
    assert response.status_code == 200
    return response.text


def sample(text: str, name: str, **labels: str) -> float:
    """The value of ``name`` with exactly ``labels`` (in any order) in a scrape."""
    for match in re.finditer(rf"^{re.escape(name)}(?:{{(.*)}})? (\S+)$", text, re.MULTILINE):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if found == labels:
            return float(match.group(2))
    raise AssertionError(f"{name}{labels} not in the scrape")


def test_metric_names_and_moving_histograms(tmp_path: Path) -> None:
    with Server(tmp_path) as server:
        before = scrape(server)
        for name in ("llmkg_memory_usage_bytes", "process_resident_memory_bytes"):
            assert sample(before, name) > 0
        assert sample(before, "llmkg_hnsw_memory_bytes") >= 0
        for level in ("l1", "l2"):
            sample(before, "llmkg_cache_hit_rate", cache_level=level)
        assert sample(before, "llmkg_allocation_latency_seconds_count") == 0

        for i in range(10):
            server.post("/api/v1/allocate", {"fact": fact(i)})
        for i in range(4):
            server.post("/api/v1/search", {"query": {"embedding": fact(i)["embedding"], "k": 3}})
            server.client.get(f"/api/v1/nodes/{i + 1}")
        server.client.get("/api/v1/nodes/9999")

        after = scrape(server)
        assert sample(after, "llmkg_allocation_latency_seconds_count") == 10
        assert sample(after, "llmkg_allocation_latency_seconds_bucket", le="10.0") == 10
        # The config's buckets: [0.001, 0.01, 0.1, 1.0, 10.0]
        assert re.findall(r'llmkg_allocation_latency_seconds_bucket\{le="([^"]+)"\}', after) == [
            "0.001",
            "0.01",
            "0.1",
            "1.0",
            "10.0",
            "+Inf",
        ]
        # every allocation but the first (into an empty graph) and every search
        assert sample(after, "llmkg_hnsw_search_time_seconds_count") == 13
        assert sample(after, "llmkg_hnsw_memory_bytes") > sample(before, "llmkg_hnsw_memory_bytes")
        requests = "llmkg_http_requests_total"
        assert sample(after, requests, route="/api/v1/allocate", method="POST", status="200") == 10
        node = "/api/v1/nodes/{node_id}"
        assert sample(after, requests, route=node, method="GET", status="404") == 1
        assert sample(after, "llmkg_cache_hit_rate", cache_level="l1") > 0
        assert "llmkg_http_request_duration_seconds_bucket" in after


def test_endpoint_path_and_disabled_listener(tmp_path: Path) -> None:
    env = {"LLMKG__MONITORING__PROMETHEUS__ENDPOINT": "/prom"}
    with Server(tmp_path / "a", env) as server:
        assert "llmkg_memory_usage_bytes" in scrape(server, "/prom")
        assert httpx.get(server.metrics_url + "/metrics").status_code == 404
    with Server(tmp_path / "b", {"LLMKG__MONITORING__ENABLE_METRICS": "false"}) as server:
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.metrics_url + "/metrics", timeout=5)


def test_histograms_off_gives_count_and_sum_only(tmp_path: Path) -> None:
    env = {"LLMKG__MONITORING__PROMETHEUS__ENABLE_HISTOGRAM": "false"}
    with Server(tmp_path, env) as server:
        server.post("/api/v1/allocate", {"fact": fact(1)})
        text = scrape(server)
        assert sample(text, "llmkg_allocation_latency_seconds_count") == 1
        assert "llmkg_allocation_latency_seconds_bucket" not in text


def test_refusals_of_the_security_layer_count_under_their_route(tmp_path: Path) -> None:
    env = {
        "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "true",
        "LLMKG__SECURITY__RATE_LIMIT__REQUESTS_PER_SECOND": "0.01",
        "LLMKG__SECURITY__RATE_LIMIT__BURST": "1",
    }
    with Server(tmp_path, env) as server:
        statuses = [server.client.get("/api/v1/nodes/1").status_code for _ in range(3)]
        assert statuses == [404, 429, 429]
        text = scrape(server)
        node = "/api/v1/nodes/{node_id}"
        requests = "llmkg_http_requests_total"
        assert sample(text, requests, route=node, method="GET", status="429") == 2
