"""Which partitions each server hosts: the one placement rule of every deployment.

A *node* is one llmkg server (a pod in Kubernetes, a process of the local cluster), and
``zones[i]`` is the availability zone of node ``i``. :func:`assign` places the
``replication_factor`` replicas of every partition; the Kubernetes overlay (one
StatefulSet per zone, k8s/overlays/production-partitioned) and the local cluster both
derive their layout from it, so that the two cannot disagree.

The rule: number the replica slots ``s = partition * R + replica``; slot ``s`` goes to
zone ``s mod Z`` and, inside that zone, to its nodes in turn. With fewer zones than
replicas, every node counts as a zone of its own (taken in an order that alternates the
real zones). What it guarantees (tests/test_topology_assignment.py checks each):

- every partition has exactly ``R`` replicas, on ``R`` different nodes;
- when the nodes span at least ``R`` zones, on ``R`` different zones;
- balance: each zone holds ``floor(P*R/Z)`` or ``ceil(P*R/Z)`` replicas and its nodes
  differ by at most one, so with zones of equal size no two nodes differ by more than one;
- with exactly ``R`` zones of equal size, the ``i``-th node of every zone hosts the same
  partitions (mirrors): the disruption budgets of the Kubernetes overlay rely on it;
- growth: raising ``partition_count`` moves no existing replica, and adding nodes to one
  zone (the zones staying the same) moves replicas only between that zone's nodes.

Not guaranteed: minimal movement inside a zone. A node added to a zone takes partitions
from all of that zone's nodes and reshuffles the others (round-robin). Pods follow
PostgreSQL, so a pod that gains a partition builds it from the database; the cost is a
rebuild, never a loss.
"""

from __future__ import annotations

from collections.abc import Sequence


class TopologyError(ValueError):
    """A layout that cannot be placed (too few nodes, a bad count)."""


def zone_groups(zones: Sequence[str]) -> list[list[int]]:
    """The node indices of each zone, zones in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for node, zone in enumerate(zones):
        groups.setdefault(zone, []).append(node)
    return list(groups.values())


def _interleaved(groups: list[list[int]]) -> list[int]:
    """Every node once, taking one from each zone in turn: a0 b0 a1 b1 ..."""
    out: list[int] = []
    for position in range(max(len(g) for g in groups)):
        out.extend(g[position] for g in groups if position < len(g))
    return out


def assign(
    partition_count: int, replication_factor: int, zones: Sequence[str]
) -> tuple[tuple[int, ...], ...]:
    """The partitions each node hosts, in increasing order: ``result[i]`` for node ``i``,
    whose zone is ``zones[i]`` (use one zone name, e.g. ``""``, for nodes without one)."""
    if partition_count < 1:
        raise TopologyError(f"partition_count must be at least 1, not {partition_count}")
    if replication_factor < 1:
        raise TopologyError(f"replication_factor must be at least 1, not {replication_factor}")
    if len(zones) < replication_factor:
        raise TopologyError(
            f"{replication_factor} replicas of each partition need at least "
            f"{replication_factor} nodes, not {len(zones)}"
        )
    groups = zone_groups(zones)
    # The failure domains the replicas of a partition are spread over: the zones, or
    # single nodes when there are fewer zones than replicas.
    domains = groups if len(groups) >= replication_factor else [[n] for n in _interleaved(groups)]
    hosted: list[list[int]] = [[] for _ in zones]
    for slot in range(partition_count * replication_factor):
        partition = slot // replication_factor
        domain = domains[slot % len(domains)]
        turn = slot // len(domains)  # this domain's slots are numbered 0, 1, 2, ...
        hosted[domain[turn % len(domain)]].append(partition)
    return tuple(tuple(sorted(p)) for p in hosted)


def replicas(hosted: Sequence[Sequence[int]]) -> dict[int, list[int]]:
    """The nodes of each partition, from :func:`assign`'s answer."""
    out: dict[int, list[int]] = {}
    for node, partitions in enumerate(hosted):
        for partition in partitions:
            out.setdefault(partition, []).append(node)
    return dict(sorted(out.items()))


def zone_major(zones: Sequence[str], per_zone: int) -> tuple[str, ...]:
    """The zones of ``per_zone`` nodes in each of ``zones``, zone by zone: the node list
    of one StatefulSet per zone (node ``z * per_zone + i`` is pod ``i`` of zone ``z``)."""
    if per_zone < 1:
        raise TopologyError(f"per_zone must be at least 1, not {per_zone}")
    return tuple(zone for zone in zones for _ in range(per_zone))


def hosted_by_pod(
    partition_count: int,
    replication_factor: int,
    zones: Sequence[str],
    per_zone: int,
    zone: str,
    pod_index: int,
) -> tuple[int, ...]:
    """The partitions of pod ``pod_index`` of the StatefulSet of ``zone``, in a layout of
    ``per_zone`` pods in each of ``zones``."""
    if zone not in zones:
        raise TopologyError(f"zone {zone!r} is not one of {list(zones)}")
    if not 0 <= pod_index < per_zone:
        raise TopologyError(f"pod index {pod_index} is not below {per_zone} pods per zone")
    hosted = assign(partition_count, replication_factor, zone_major(zones, per_zone))
    return hosted[list(zones).index(zone) * per_zone + pod_index]
