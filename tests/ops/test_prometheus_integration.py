"""A real Prometheus (Debian's binary) scrapes a real llmkg-server with the project's scrape
job and alert rules; after some traffic, every expression of the Grafana dashboard and every
alert rule is evaluated through Prometheus' HTTP API and must return data.

The server serves a partitioned graph on PostgreSQL, as in production: two partitions of
its own, which its router calls over its partition port, so that the series of the
partition layer (calls, their latency, the breakers, the lag per partition) exist too.

What is under test is the project's own files: the job's ``metric_relabel_configs`` exactly
as in monitoring/prometheus-config.yaml, monitoring/alerts.yaml loaded as a rules file, and
the dashboard's ``expr`` strings as they are (they use no Grafana variable but
``$datasource``, which is not part of any expression; should one ever use
``$__rate_interval`` (or ``$__interval``, ``$__range``), GRAFANA_VARIABLES below gives it a
concrete range). Skipped when ``prometheus`` is not installed (apt-get install prometheus;
.ci/run does it).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .helpers import REPO
from .test_monitoring import JOB, alert_rules, dashboard_exprs, scrape_job, series_read_by

pytest.importorskip("llmkg.server.cli", reason="the package is not built (make develop)")
from pglib import Cluster
from serverlib import Server, fact, free_port

ALERTS = REPO / "monitoring/alerts.yaml"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m"}
DEADLINE = 30.0  # seconds, for each wait below (a deadline, not a timing assertion)


def poll(what: str, check: Any, timeout: float = DEADLINE) -> Any:
    """``check()`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.25)


def prometheus_config(metrics_port: int) -> dict[str, Any]:
    """The project's scrape job, runnable by Debian's Prometheus against one local target."""
    job = scrape_job()
    # Debian builds Prometheus without Kubernetes service discovery (it rejects
    # kubernetes_sd_configs): the server's metrics port is a static target instead.
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{metrics_port}"]}]
    # The target relabelling reads only the pod metadata of the Kubernetes discovery, which a
    # static target does not have: its first rule keeps only targets annotated
    # prometheus.io/scrape=true and would drop ours, the others derive the path, the port and
    # the namespace/pod labels from that metadata. They are dropped here; the
    # metric_relabel_configs (which series are kept, the subject of this test) stay as the
    # file has them.
    job["relabel_configs"] = [
        rule for rule in job["relabel_configs"] if not reads_kubernetes_metadata(rule)
    ]
    assert job["metric_relabel_configs"] == scrape_job()["metric_relabel_configs"]
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [job],
    }


def reads_kubernetes_metadata(rule: dict[str, Any]) -> bool:
    labels = [*rule.get("source_labels", []), rule.get("regex", "")]
    return any(str(label).startswith("__meta_kubernetes_") for label in labels)


class Prometheus:
    def __init__(self, tmp: Path, config: dict[str, Any]) -> None:
        exe = shutil.which("prometheus")
        assert exe is not None
        tmp.mkdir(parents=True, exist_ok=True)
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "prometheus.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [
                exe,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            pytest.fail(f"prometheus exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        body = self.client.get("/api/v1/query", params=params).json()
        assert body["status"] == "success", f"{expr}: {body}"
        assert body["data"]["resultType"] == "vector", expr
        return body["data"]["result"]

    def samples_since(self, since: float) -> int:
        """Successful scrapes of the target after ``since`` (a Unix time); read from ``up``,
        which the metric relabelling under test does not touch."""
        expr = f'up{{job="{JOB}"}}[1m]'
        body = self.client.get("/api/v1/query", params={"query": expr}).json()
        assert body["status"] == "success", body
        return sum(
            1
            for series in body["data"]["result"]
            for t, v in series["values"]
            if t > since and v == "1"
        )

    def rules(self) -> list[dict[str, Any]]:
        body = self.client.get("/api/v1/rules").json()
        assert body["status"] == "success", body
        return [r for g in body["data"]["groups"] for r in g["rules"]]

    def rules_evaluated_since(self, since: float) -> bool:
        stamps = [r.get("lastEvaluation", "") for r in self.rules()]
        return bool(stamps) and all(parse_time(s) > since for s in stamps)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        self.client.close()


def parse_time(stamp: str) -> float:
    """An RFC 3339 time of the API (nanoseconds, Z or an offset) as a Unix time."""
    match = re.fullmatch(r"(.+T[0-9:]+)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", stamp)
    if match is None:
        return 0.0
    whole = datetime.fromisoformat(match.group(1) + match.group(3).replace("Z", "+00:00"))
    return whole.timestamp() + float(f"0.{match.group(2) or 0}")


def finite(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result if math.isfinite(float(r["value"][1]))]


def partitioned(dsn: str) -> dict[str, str]:
    """A server alone with the two partitions of its database, called over its own
    partition port."""
    grpc = free_port()
    d = "LLMKG__SCALABILITY__DISTRIBUTION__"
    return {
        "LLMKG__STORAGE__BACKEND": "postgresql",
        "LLMKG__STORAGE__POSTGRESQL__DSN": dsn,
        "LLMKG__SCALABILITY__ENABLE_DISTRIBUTED": "true",
        "LLMKG__SERVER__GRPC_PORT": str(grpc),
        f"{d}PARTITION_COUNT": "2",
        f"{d}REPLICATION_FACTOR": "1",
        f"{d}PARTITIONS": "[0, 1]",
        f"{d}DISCOVERY__TYPE": "static",
        f"{d}DISCOVERY__PEERS": f'["127.0.0.1:{grpc}"]',
    }


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster
) -> Iterator[tuple[Prometheus, Server]]:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (apt-get install prometheus; .ci/run does it)")
    tmp = tmp_path_factory.mktemp("prometheus")
    server = Server(tmp / "server", partitioned(pg_cluster.create_database()))
    prometheus: Prometheus | None = None
    try:
        server.start()
        prometheus = Prometheus(tmp / "prometheus", prometheus_config(server.metrics_port))
        poll("prometheus ready", prometheus.ready)
        # Counters and histograms labelled by route and status are born with their first
        # request, and rate() reads the growth between two samples: a first round of
        # traffic, a scrape of it, a second round, two scrapes of that.
        drive_traffic(server, 0)
        first = time.time()
        poll("a scrape after the first round", lambda: prometheus.samples_since(first) >= 1)
        drive_traffic(server, 100)
        second = time.time()
        poll("two scrapes after the second", lambda: prometheus.samples_since(second) >= 2)
        scraped = time.time()
        # ... and an evaluation of every alert rule over those.
        poll("the rules evaluated", lambda: prometheus.rules_evaluated_since(scraped))
        yield prometheus, server
    finally:
        if prometheus is not None:
            prometheus.stop()
        server.stop()


def drive_traffic(server: Server, start: int) -> None:
    """Allocations (one batch), searches, gets, a 404 and a few 422s: every histogram and
    every route/status series the dashboard reads gets samples."""
    for i in range(start, start + 8):
        assert server.post("/api/v1/allocate", {"fact": fact(i)}).status_code == 200
    facts = [fact(i) for i in range(start + 8, start + 13)]
    batch = server.post("/api/v1/allocate/batch", {"facts": facts})
    assert batch.status_code == 200, batch.text
    for i in range(5):
        body = {"query": {"embedding": fact(start + i)["embedding"], "k": 3}}
        assert server.post("/api/v1/search", body).status_code == 200
        assert server.client.get(f"/api/v1/nodes/{i + 1}").status_code == 200
    assert server.client.get("/api/v1/nodes/999999").status_code == 404
    for bad in ({}, {"fact": {"subject": "s"}}, {"fact": fact(1, dim=3)}):
        assert server.post("/api/v1/allocate", bad).status_code == 422


def concrete(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"an unhandled Grafana variable in {expr}"
    return expr


COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")


def split_comparison(expr: str) -> tuple[str, str, str] | None:
    """``A op B`` at the top level of ``expr`` (outside brackets and strings), else None."""
    depth, quote, found = 0, "", None
    i = 0
    while i < len(expr):
        c = expr[i]
        if quote:
            quote = "" if c == quote else quote
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0:
            op = next((o for o in COMPARISONS if expr.startswith(o, i)), None)
            if op:
                found = (i, op)
                i += len(op)
                continue
        i += 1
    if found is None:
        return None
    at, op = found
    return expr[:at].strip(), op, expr[at + len(op) :].removeprefix(" bool").strip()


def offset_seconds(expr: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    offsets = re.findall(r"\boffset\s+(\d+)(ms|s|m|h|d|w)\b", expr)
    return max((int(n) * units[u] for n, u in offsets), default=0.0)


def is_number(expr: str) -> bool:
    try:
        float(expr)
    except ValueError:
        return False
    return True


def test_relabelling_keeps_what_the_dashboard_and_alerts_read(setup) -> None:
    prometheus, server = setup
    stored = {
        r["metric"]["__name__"] for r in prometheus.query(f'count by (__name__) ({{job="{JOB}"}})')
    }
    exposed = set(
        re.findall(
            r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]",
            httpx.get(server.metrics_url + "/metrics").text,
            re.M,
        )
    )
    read = series_read_by(dashboard_exprs() + [r["expr"] for r in alert_rules()])
    assert {"llmkg_hnsw_memory_bytes", "llmkg_allocation_latency_seconds_bucket"} <= read
    assert read <= stored, (
        f"read by the dashboard or the alerts, not in Prometheus: {read - stored}"
    )
    llmkg = {name for name in exposed if name.startswith("llmkg_")}
    assert llmkg <= stored, f"exported by the server, dropped: {llmkg - stored}"
    # The keep rule is in force: the server's process/runtime series are exported but were
    # not stored; besides llmkg's, only Prometheus' own per-target series (up, scrape_*).
    others = exposed - llmkg
    assert any(name.startswith("process_") for name in others)
    assert not others & stored, f"not dropped: {others & stored}"
    assert {n for n in stored - llmkg if not re.fullmatch(r"up|scrape_\w+", n)} == set()


@pytest.mark.parametrize("expr", dashboard_exprs(), ids=lambda e: re.sub(r"\W+", "_", e)[:60])
def test_every_dashboard_expr_returns_data(setup, expr: str) -> None:
    prometheus, _ = setup
    result = prometheus.query(concrete(expr))
    assert result, f"no data for the panel query {expr}"
    # A panel shows numbers: at least one series is not NaN (a route without requests in
    # the window divides 0 by 0, the others must not).
    assert finite(result), f"only NaN for {expr}: {result}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_expr_evaluates_and_reads_data(setup, rule: dict[str, Any]) -> None:
    """The whole expression evaluates without error (here, and as a loaded rule); a healthy
    server need not fire it, so data is asked of its operands: with the final comparison
    removed, each side that is not a number must return series now (a side with an
    ``offset`` is evaluated that much later, when its window covers this test's samples);
    two vector sides must have matching label sets, or the comparison could never hold."""
    prometheus, _ = setup
    expr = rule["expr"].strip()
    prometheus.query(expr)  # status success, fired or not
    (loaded,) = [r for r in prometheus.rules() if r.get("name") == rule["alert"]]
    assert loaded["health"] == "ok", loaded
    assert not loaded.get("lastError"), loaded
    split = split_comparison(expr)
    assert split is not None, f"no final comparison in {expr}"
    now = time.time()
    sides = []
    for side in (split[0], split[2]):
        if is_number(side):
            continue
        result = prometheus.query(side, at=now + offset_seconds(side))
        assert result, f"{rule['alert']}: no data for {side}"
        assert finite(result), f"{rule['alert']}: only NaN for {side}: {result}"
        sides.append({tuple(sorted(r["metric"].items())) for r in result})
    assert sides, expr
    if len(sides) == 2:
        assert sides[0] & sides[1], f"{rule['alert']}: the two sides never match: {sides}"


def test_split_comparison() -> None:
    assert split_comparison('up{job="a"} == 0') == ('up{job="a"}', "==", "0")
    assert split_comparison('a{x!="1",y=~"2"} / b > bool 0.85') == (
        'a{x!="1",y=~"2"} / b',
        ">",
        "0.85",
    )
    assert split_comparison("max(a > 1)") is None
    assert offset_seconds("avg_over_time(x[1h] offset 1h)") == 3600
