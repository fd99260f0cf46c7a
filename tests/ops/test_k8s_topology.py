"""k8s/overlays/production-partitioned held to k8s/base/topology.yaml, the one source of
its numbers: partitions, replication factor, zones, pods per zone. The overlay renders
and validates; there is one StatefulSet per zone, pinned to it; every pod's own
`llmkg-server topology` (its config, its environment) gives every partition exactly
`replication_factor` replicas in distinct zones; the disruption budgets never allow both
replicas of a partition down; discovery's Service lists ready pods only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmkg.topology import hosted_by_pod, replicas

from .helpers import config, one, rendered
from .test_k8s import K8S_VERSIONS, validate

OVERLAY = "production-partitioned"
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
ZONE_LABEL = "topology.kubernetes.io/zone"


def topology() -> dict[str, Any]:
    configmap = one(rendered(OVERLAY), "ConfigMap", "llmkg-scalable-topology")
    loaded: dict[str, Any] = yaml.safe_load(configmap["data"]["topology.yaml"])
    return loaded


def env(sts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def zone_sets() -> dict[str, dict[str, Any]]:
    """The StatefulSets by the zone they tell their pods."""
    sets = [d for d in rendered(OVERLAY) if d["kind"] == "StatefulSet"]
    return {env(s)["LLMKG_ZONE"]["value"]: s for s in sets}


def pods() -> list[dict[str, Any]]:
    """Every pod of the overlay: its StatefulSet, zone, ordinal and labels as the
    StatefulSet controller sets them."""
    out = []
    for zone, sts in zone_sets().items():
        name = sts["metadata"]["name"]
        for i in range(sts["spec"]["replicas"]):
            labels = {
                **sts["spec"]["template"]["metadata"]["labels"],
                "apps.kubernetes.io/pod-index": str(i),
                "statefulset.kubernetes.io/pod-name": f"{name}-{i}",
            }
            out.append({"sts": name, "zone": zone, "ordinal": i, "labels": labels})
    return out


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}, "only matchLabels is checked here"
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_overlay_renders_and_validates(version: str) -> None:
    docs = rendered(OVERLAY)
    for doc in docs:
        validate(doc, version)
    assert not [d for d in docs if d["kind"] == "Secret"]
    # production-postgresql, with its StatefulSet and budget replaced by the zones' ones.
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    base = {(d["kind"], d["metadata"]["name"]) for d in rendered("production-postgresql")}
    replaced = {("StatefulSet", "llmkg-scalable-allocation"),
                ("PodDisruptionBudget", "llmkg-scalable-allocation")}  # fmt: skip
    assert replaced <= base and not replaced & names
    added = names - base
    assert {kind for kind, _ in added} == {"StatefulSet", "PodDisruptionBudget"}
    assert base - replaced <= names
    for doc in docs:
        assert doc["metadata"].get("namespace", "llmkg-production") == "llmkg-production"


def test_the_config_holds_the_topology_numbers() -> None:
    t = topology()
    partitioning, primary = t["partitioning"], t["clusters"]["primary"]
    dist = config(OVERLAY)["scalability"]["distribution"]
    assert dist["partition_count"] == partitioning["primary_partitions"]
    assert dist["replication_factor"] == partitioning["replication_factor"]
    assert dist["zones"] == partitioning["replica_zones"]
    assert dist["pods_per_zone"] == partitioning["pods_per_zone"]
    assert set(partitioning["replica_zones"]) <= set(primary["availability_zones"])
    # As many zones as replicas: each partition has one replica in every zone, and pod i
    # of each zone hosts the same partitions (what the budgets below rely on).
    assert len(partitioning["replica_zones"]) == partitioning["replication_factor"]
    # The pods that follow one database, and the database's connections.
    pods_total = len(partitioning["replica_zones"]) * partitioning["pods_per_zone"]
    assert pods_total * config(OVERLAY)["storage"]["postgresql"]["pool_size"] <= 200


def test_one_statefulset_per_zone_pinned_to_it() -> None:
    partitioning = topology()["partitioning"]
    sets = zone_sets()
    assert sorted(sets) == sorted(partitioning["replica_zones"])
    selectors = []
    for zone, sts in sets.items():
        spec = sts["spec"]
        assert spec["replicas"] == partitioning["pods_per_zone"], zone
        assert sts["metadata"]["name"] == f"llmkg-scalable-allocation-{zone}"
        affinity = spec["template"]["spec"]["affinity"]["nodeAffinity"]
        (term,) = affinity["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        assert term["matchExpressions"] == [{"key": ZONE_LABEL, "operator": "In", "values": [zone]}]
        variables = env(sts)
        assert variables["LLMKG_POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == POD_INDEX
        assert variables["LLMKG_ENVIRONMENT"]["value"] == OVERLAY
        assert "LLMKG_PARTITION_ID" not in variables  # one database, partitions by layout
        assert variables["LLMKG__STORAGE__BACKEND"]["value"] == "postgresql"
        assert matches(spec["selector"], spec["template"]["metadata"]["labels"])
        selectors.append(spec["selector"]["matchLabels"])
    # No set's selector matches another set's pods (a set would adopt them).
    for pod in pods():
        owners = [s for s in sets.values() if matches(s["spec"]["selector"], pod["labels"])]
        assert [o["metadata"]["name"] for o in owners] == [pod["sts"]]


def test_every_pods_own_view_places_each_partition_in_every_zone(tmp_path: Path) -> None:
    pytest.importorskip("llmkg.server.cli", reason="the package is not built (make develop)")
    from .test_k8s_config import pod_run

    partitioning = topology()["partitioning"]
    hosted: list[tuple[int, ...]] = []
    zones: list[str] = []
    for pod in pods():
        root = tmp_path / f"{pod['sts']}-{pod['ordinal']}"
        out = pod_run(OVERLAY, root, pod["ordinal"], ("topology",), statefulset=pod["sts"])
        assert out.returncode == 0, out.stdout + out.stderr
        shown = json.loads(out.stdout)
        assert shown["zone"] == pod["zone"] and shown["pod_index"] == pod["ordinal"]
        hosted.append(tuple(shown["partitions"]))
        zones.append(pod["zone"])
    on = replicas(hosted)
    assert sorted(on) == list(range(partitioning["primary_partitions"]))
    r = partitioning["replication_factor"]
    for partition, nodes in on.items():
        assert len(nodes) == r, partition
        assert len({zones[n] for n in nodes}) == r, (partition, [zones[n] for n in nodes])


def test_disruption_budgets_never_allow_both_replicas_of_a_partition_down() -> None:
    docs = rendered(OVERLAY)
    budgets = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    dist = config(OVERLAY)["scalability"]["distribution"]
    every = pods()
    for budget in budgets:
        spec = budget["spec"]
        assert isinstance(spec["maxUnavailable"], int) and "minAvailable" not in spec
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # Each pod under exactly one budget: the eviction API refuses a pod under two.
    for pod in every:
        covering = [b for b in budgets if matches(b["spec"]["selector"], pod["labels"])]
        assert len(covering) == 1, (pod["sts"], pod["ordinal"], len(covering))
    # The partitions of each pod, by the placement the pods use (checked against the
    # pods' own view above).
    for pod in every:
        pod["partitions"] = hosted_by_pod(
            dist["partition_count"],
            dist["replication_factor"],
            dist["zones"],
            dist["pods_per_zone"],
            pod["zone"],
            pod["ordinal"],
        )
    for partition in range(dist["partition_count"]):
        holders = [p for p in every if partition in p["partitions"]]
        # The most replicas of this partition that the budgets let be evicted at once.
        evictable = 0
        for budget in budgets:
            under = [p for p in holders if matches(budget["spec"]["selector"], p["labels"])]
            evictable += min(budget["spec"]["maxUnavailable"], len(under))
        assert evictable < len(holders), f"partition {partition}: all replicas evictable"


def test_discovery_lists_the_ready_pods_of_every_zone() -> None:
    docs = rendered(OVERLAY)
    discovery = config(OVERLAY)["scalability"]["distribution"]["discovery"]
    assert discovery["type"] == "kubernetes"
    service = one(docs, "Service", discovery["service_name"])
    assert service["metadata"]["namespace"] == discovery["namespace"]
    assert service["spec"]["clusterIP"] == "None"  # one A record per pod
    assert service["spec"]["publishNotReadyAddresses"] is False
    assert discovery["port"] in {p["port"] for p in service["spec"]["ports"]}
    selector = {"matchLabels": service["spec"]["selector"]}
    assert all(matches(selector, pod["labels"]) for pod in pods())
    for sts in zone_sets().values():
        assert sts["spec"]["serviceName"] == discovery["service_name"]
