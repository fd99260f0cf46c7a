"""The placement of partitions on servers (llmkg.topology.assign): what its docstring
guarantees, checked over every small layout, and the layouts the deployments use."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from llmkg.topology import TopologyError, assign, hosted_by_pod, replicas, zone_groups, zone_major

# Every layout of up to 4 zones of up to 4 servers each, 1-3 replicas, 1-13 partitions.
ZONE_SIZES = [
    sizes
    for count in range(1, 5)
    for sizes in itertools.combinations_with_replacement(range(1, 5), count)
]


def layouts() -> list[tuple[int, int, tuple[str, ...]]]:
    out = []
    for sizes in ZONE_SIZES:
        zones = tuple(f"z{i}" for i, size in enumerate(sizes) for _ in range(size))
        for r in range(1, 4):
            if len(zones) >= r:
                out.extend((p, r, zones) for p in range(1, 14))
    return out


LAYOUTS = layouts()


def loads(hosted: tuple[tuple[int, ...], ...]) -> list[int]:
    return [len(p) for p in hosted]


def test_every_partition_has_exactly_r_replicas_on_distinct_nodes() -> None:
    for p, r, zones in LAYOUTS:
        hosted = assign(p, r, zones)
        assert len(hosted) == len(zones)
        nodes = replicas(hosted)
        assert sorted(nodes) == list(range(p)), (p, r, zones)
        for partition, on in nodes.items():
            assert len(on) == r and len(set(on)) == r, (p, r, zones, partition, on)


def test_replicas_are_in_distinct_zones_when_there_are_enough_zones() -> None:
    checked = 0
    for p, r, zones in LAYOUTS:
        if len(set(zones)) < r:
            continue
        for partition, on in replicas(assign(p, r, zones)).items():
            assert len({zones[n] for n in on}) == r, (p, r, zones, partition, on)
            checked += 1
    assert checked > 1000


def test_balance_within_a_zone_and_across_zones_of_equal_size() -> None:
    for p, r, zones in LAYOUTS:
        hosted = assign(p, r, zones)
        groups = zone_groups(zones)
        if len(groups) >= r:
            per_zone = [sum(len(hosted[n]) for n in g) for g in groups]
            assert max(per_zone) - min(per_zone) <= 1, (p, r, zones)
            for g in groups:
                in_zone = [len(hosted[n]) for n in g]
                assert max(in_zone) - min(in_zone) <= 1, (p, r, zones)
        if len({len(g) for g in groups}) == 1 or len(groups) < r:
            assert max(loads(hosted)) - min(loads(hosted)) <= 1, (p, r, zones)


def test_with_r_equal_zones_the_ith_node_of_each_zone_mirrors_the_others() -> None:
    for r, per_zone, p in itertools.product(range(1, 4), range(1, 5), range(1, 14)):
        zones = [f"z{z}" for z in range(r)]
        hosted = assign(p, r, zone_major(zones, per_zone))
        for i in range(per_zone):
            mirrors = {hosted[z * per_zone + i] for z in range(r)}
            assert len(mirrors) == 1, (r, per_zone, p, i)


def test_more_partitions_move_no_existing_replica() -> None:
    for p, r, zones in LAYOUTS:
        before = replicas(assign(p, r, zones))
        after = replicas(assign(p + 5, r, zones))
        assert {k: after[k] for k in before} == before, (p, r, zones)


def test_nodes_added_to_one_zone_move_replicas_only_within_it() -> None:
    for p, r in itertools.product(range(1, 14), range(1, 4)):
        for sizes in ZONE_SIZES:
            if len(sizes) < r:
                continue
            grown = list(sizes)
            grown[0] += 2
            before = _by_zone(p, r, sizes)
            after = _by_zone(p, r, grown)
            for zone in range(1, len(sizes)):
                assert before[zone] == after[zone], (p, r, sizes, zone)
            # The grown zone keeps the same replicas, spread over more nodes.
            assert sorted(x for n in before[0] for x in n) == sorted(x for n in after[0] for x in n)


def _by_zone(p: int, r: int, sizes: list[int] | tuple[int, ...]) -> list[list[tuple[int, ...]]]:
    zones = [f"z{i}" for i, size in enumerate(sizes) for _ in range(size)]
    hosted = assign(p, r, zones)
    return [[hosted[n] for n in g] for g in zone_groups(zones)]


def test_fewer_zones_than_replicas_still_spreads_over_every_zone() -> None:
    # Two zones, three replicas: every partition is in both zones, whatever the order of
    # the nodes.
    zones = ["a", "a", "a", "b", "b", "b"]
    for partition, on in replicas(assign(8, 3, zones)).items():
        assert {zones[n] for n in on} == {"a", "b"}, partition


def test_the_local_cluster_layout() -> None:
    # `cluster up --partitions 8 --replicas 2 --nodes 4`, zones a/b alternating.
    hosted = assign(8, 2, ["a", "b", "a", "b"])
    assert hosted == ((0, 2, 4, 6), (0, 2, 4, 6), (1, 3, 5, 7), (1, 3, 5, 7))


def test_the_kubernetes_layout() -> None:
    # k8s/overlays/production-partitioned: 8 partitions, 2 zones of 4 pods.
    zones = ["us-west-2a", "us-west-2b"]
    assert [hosted_by_pod(8, 2, zones, 4, "us-west-2a", i) for i in range(4)] == [
        (0, 4),
        (1, 5),
        (2, 6),
        (3, 7),
    ]
    assert hosted_by_pod(8, 2, zones, 4, "us-west-2b", 3) == (3, 7)


def test_deterministic() -> None:
    zones = ["c", "a", "b", "a", "c", "b"]
    assert assign(11, 2, zones) == assign(11, 2, list(zones))
    assert Counter(len(p) for p in assign(11, 2, zones)) == Counter({4: 4, 3: 2})


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((0, 2, ["a", "b"]), "partition_count"),
        ((8, 0, ["a", "b"]), "replication_factor"),
        ((8, 3, ["a", "b"]), "at least 3 nodes"),
    ],
)
def test_impossible_layouts_are_refused(args: tuple, words: str) -> None:
    with pytest.raises(TopologyError, match=words):
        assign(*args)


def test_a_pod_outside_the_layout_is_refused() -> None:
    with pytest.raises(TopologyError, match="zone 'c'"):
        hosted_by_pod(8, 2, ["a", "b"], 4, "c", 0)
    with pytest.raises(TopologyError, match="pod index 4"):
        hosted_by_pod(8, 2, ["a", "b"], 4, "a", 4)
    with pytest.raises(TopologyError, match="per_zone"):
        zone_major(["a"], 0)
