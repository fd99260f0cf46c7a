"""monitoring/: the scrape job is a valid Prometheus config whose keep rule passes every
series the dashboard and the alerts read; the alert rules check and pass their unit tests;
the Grafana dashboard uses current panel types, a $datasource variable, and valid PromQL."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .helpers import REPO, promtool, run

MON = REPO / "monitoring"
JOB = "llmkg-scalable-allocation"
# What the server exports (the server's, the engine's and the partition layer's metrics):
# histograms and gauges.
HISTOGRAMS = (
    "llmkg_allocation_latency_seconds",
    "llmkg_hnsw_search_time_seconds",
    "llmkg_http_request_duration_seconds",
    "llmkg_partition_request_seconds",
)
GAUGES_AND_COUNTERS = (
    "llmkg_cache_hit_rate",
    "llmkg_memory_usage_bytes",
    "llmkg_memory_budget_bytes",
    "llmkg_hnsw_memory_bytes",
    "llmkg_http_requests_total",
    "llmkg_checkpoint_failures_total",
    "llmkg_checkpoint_last_success_timestamp_seconds",
    "llmkg_partition_requests_total",
    "llmkg_circuit_breaker_state",
)
DASHBOARD_METRICS = (
    "llmkg_allocation_latency_seconds",
    "llmkg_hnsw_search_time_seconds",
    "llmkg_cache_hit_rate",
    "llmkg_memory_usage_bytes",
    "llmkg_hnsw_memory_bytes",
    "llmkg_partition_requests_total",
    "llmkg_partition_request_seconds",
    "llmkg_circuit_breaker_state",
)
SEED_KEEP = (
    "(llmkg_allocation_latency|llmkg_cache_hit_rate|llmkg_memory_usage|llmkg_hnsw_search_time)"
)


def scrape_job() -> dict[str, Any]:
    configmap = yaml.safe_load((MON / "prometheus-config.yaml").read_text())
    (job,) = yaml.safe_load(configmap["data"]["llmkg-scrape.yaml"])
    return job


def dashboard() -> dict[str, Any]:
    return json.loads((MON / "grafana-dashboard.json").read_text())


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((MON / "alerts.yaml").read_text())
    return [r for g in rules["groups"] for r in g["rules"]]


def kept(regex: str, name: str) -> bool:
    # Prometheus anchors relabel regexes at both ends (^(?:regex)$).
    return re.fullmatch(f"(?:{regex})", name) is not None


def series_read_by(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\b(llmkg_[a-z0-9_]+)", e)}


def test_scrape_configmap_validates() -> None:
    doc = yaml.safe_load((MON / "prometheus-config.yaml").read_text())
    kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_keep_rule_passes_every_series_used() -> None:
    (keep,) = [r for r in scrape_job()["metric_relabel_configs"] if r["action"] == "keep"]
    assert keep["source_labels"] == ["__name__"]
    exported = set(GAUGES_AND_COUNTERS)
    for h in HISTOGRAMS:
        exported |= {f"{h}_bucket", f"{h}_sum", f"{h}_count"}
    used = series_read_by(dashboard_exprs() + [r["expr"] for r in alert_rules()])
    assert used <= exported, f"read but not exported by the server: {used - exported}"
    for name in exported:
        assert kept(keep["regex"], name), f"{name} dropped by {keep['regex']!r}"
    # The anchoring this guards against: a list of bare names drops the histograms' series.
    assert not kept(SEED_KEEP, "llmkg_allocation_latency_seconds_bucket")
    assert not kept(SEED_KEEP, "llmkg_hnsw_memory_bytes")


def test_scrape_job_targets_the_pods_annotations() -> None:
    job = scrape_job()
    assert job["job_name"] == JOB
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert set(sd["namespaces"]["names"]) == {"llmkg-production", "llmkg-staging"}


def test_promtool_checks_a_config_embedding_the_job(tmp_path: Path) -> None:
    exe = promtool()
    shutil.copy(MON / "alerts.yaml", tmp_path / "alerts.yaml")
    job = scrape_job()
    # Debian builds Prometheus without the Kubernetes service discovery (it rejects
    # kubernetes_sd_configs as an unknown field): promtool checks everything else of the
    # job, relabelling included, with a static target in its place.
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [{"targets": ["127.0.0.1:9090"]}]
    cfg = {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": ["alerts.yaml"],
        "scrape_configs": [job],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    out = run(exe, "check", "config", str(tmp_path / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    # ... and fails on a broken one.
    cfg["scrape_configs"][0]["metric_relabel_configs"][0]["regex"] = "llmkg_(.*"
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    assert run(exe, "check", "config", str(tmp_path / "prometheus.yml")).returncode != 0


def test_alert_rules_check() -> None:
    out = run(promtool(), "check", "rules", str(MON / "alerts.yaml"))
    assert out.returncode == 0, out.stdout + out.stderr
    names = {r["alert"] for r in alert_rules()}
    assert {
        "LLMKGAllocationLatencyHigh",
        "LLMKGCacheHitRateCollapse",
        "LLMKGMemoryPressure",
        "LLMKGPodNotReady",
        "LLMKGCheckpointFailing",
        "LLMKGCircuitBreakerOpen",
        "LLMKGPartitionCallsFailing",
    } <= names
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_alert_unit_tests_pass() -> None:
    out = run(promtool(), "test", "rules", "alerts.test.yaml", cwd=MON)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (") > 0.1\n", ") > 0.2\n"),  # latency objective raised
        (") > 0.1\n", ") > 0.05\n"),  # ... or lowered
        ("< 0.5 * avg by", "< 0.1 * avg by"),  # collapse no longer detected
        ("> 0.85\n", "> 0.95\n"),  # pressure threshold moved
        ('up{job="llmkg-scalable-allocation"} == 0', 'up{job="other"} == 0'),
        ("[15m]) > bool 0)", "[15m]) > bool 5)"),  # checkpoint failures no longer seen
        # ... or only after a day without a snapshot
        ("> bool 0)\n            > 1800", "> bool 0)\n            > 86400"),
        (
            'state{job="llmkg-scalable-allocation"}) == 2',
            'state{job="llmkg-scalable-allocation"}) == 1',
        ),
        ("            > 0.05\n", "            > 0.15\n"),  # 10% of calls failing unseen
        ('code=~"UNAVAILABLE|', 'code=~"INVALID_ARGUMENT|UNAVAILABLE|'),  # callers' mistakes
    ],
)
def test_alert_unit_tests_catch_a_changed_rule(tmp_path: Path, old: str, new: str) -> None:
    exe = promtool()
    rules = (MON / "alerts.yaml").read_text()
    assert old in rules
    (tmp_path / "alerts.yaml").write_text(rules.replace(old, new, 1))
    shutil.copy(MON / "alerts.test.yaml", tmp_path / "alerts.test.yaml")
    assert run(exe, "test", "rules", "alerts.test.yaml", cwd=tmp_path).returncode != 0


def test_dashboard_structure() -> None:
    d = dashboard()
    assert "dashboard" not in d, "the bare dashboard model, importable as it is"
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    (var,) = [v for v in d["templating"]["list"] if v["name"] == "datasource"]
    assert var["type"] == "datasource" and var["query"] == "prometheus"
    panels = d["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat"}, panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    refs = [[t["refId"] for t in p["targets"]] for p in panels]
    assert all(len(r) == len(set(r)) for r in refs)


def test_dashboard_shows_every_metric_and_http_by_route() -> None:
    exprs = dashboard_exprs()
    for metric in DASHBOARD_METRICS:
        assert any(metric in e for e in exprs), f"no panel reads {metric}"
    for metric in ("llmkg_allocation_latency_seconds", "llmkg_hnsw_search_time_seconds"):
        assert any(f"rate({metric}_bucket" in e and "histogram_quantile" in e for e in exprs)
    http = [e for e in exprs if "llmkg_http_requests_total" in e]
    assert any("by (route)" in e and "status=~" not in e for e in http), "request rate"
    assert any('status=~"5.."' in e and "by (route)" in e for e in http), "error rate"
    levels = [e for e in exprs if "llmkg_cache_hit_rate" in e]
    assert any('cache_level="l1"' in e for e in levels)
    assert any('cache_level="l2"' in e for e in levels)


def test_dashboard_exprs_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses every expression of a rules file: one recording rule per expr.
    exe = promtool()
    rules = [{"record": f"dashboard:expr{i}", "expr": e} for i, e in enumerate(dashboard_exprs())]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = run(exe, "check", "rules", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    rules.append({"record": "dashboard:broken", "expr": "sum by (route) (rate(x[5m])"})
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert run(exe, "check", "rules", str(path)).returncode != 0


def test_dashboard_error_rate_is_zero_without_errors(tmp_path: Path) -> None:
    # A route without a 5xx answer shows 0, not "No data" (the ratio of the 5xx series alone
    # has no series for it); with some, the ratio of 5xx to all requests of the route.
    (expr,) = [e for e in dashboard_exprs() if 'status=~"5.."' in e]
    rules = {"groups": [{"name": "d", "rules": [{"record": "error_rate", "expr": expr}]}]}
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    metric = f'llmkg_http_requests_total{{job="{JOB}",route="%s",method="GET",status="%s"}}'
    tests = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": metric % ("/a", "200"), "values": "0+90x10"},
                    {"series": metric % ("/a", "503"), "values": "0+10x10"},
                    {"series": metric % ("/b", "200"), "values": "0+60x10"},
                    {"series": metric % ("/b", "404"), "values": "0+60x10"},
                ],
                "promql_expr_test": [
                    {
                        "expr": "error_rate",
                        "eval_time": "10m",
                        "exp_samples": [
                            {"labels": 'error_rate{route="/a"}', "value": 0.1},
                            {"labels": 'error_rate{route="/b"}', "value": 0},
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(tests))
    out = run(promtool(), "test", "rules", "test.yaml", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
