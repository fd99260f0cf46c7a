"""A partitioned graph on real processes: 8 partitions, each on 2 of 4 servers (zones a
and b), PostgreSQL the truth, gRPC between the servers. Any server answers every routed
route; a fact lives in its triple's home partition; a search merges all 8; a server
killed or stopped costs no acknowledged write and no silently partial answer."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from clusterlib import Load, LocalCluster, local_cluster
from serverlib import fact, until

from llmkg.store.placement import home_partition

PARTITIONS = 8
# A short deadline between servers: a stopped peer costs a request this much at most.
FAST = {
    "LLMKG__SCALABILITY__DISTRIBUTION__COMMUNICATION_TIMEOUT": "2s",
    "LLMKG__SCALABILITY__DISTRIBUTION__CIRCUIT_BREAKER_TIMEOUT": "2s",
    "LLMKG__STORAGE__POSTGRESQL__POOL_SIZE": "4",
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with local_cluster(replicas=2, partitions=PARTITIONS, nodes=4, env=FAST) as c:
        yield c


def exact_top(facts: dict[int, np.ndarray], query: np.ndarray, k: int) -> list[int]:
    ids = sorted(facts)
    scores = np.array([float(facts[i] @ query) for i in ids])
    order = sorted(range(len(ids)), key=lambda j: (-scores[j], ids[j]))
    return [ids[j] for j in order[:k]]


def test_the_layout_puts_every_partition_in_both_zones(cluster: LocalCluster) -> None:
    zones: dict[int, set[str]] = {}
    for node in cluster.nodes:
        assert node["grpc"] and node["zone"] in ("a", "b")
        for p in node["partitions"]:
            zones.setdefault(p, set()).add(node["zone"])
    assert zones == {p: {"a", "b"} for p in range(PARTITIONS)}
    ready = cluster.clients[0].get("/health/ready").json()
    assert ready["partition"]["mode"] == "partitioned"
    assert ready["partition"]["hosted"] == cluster.nodes[0]["partitions"]
    # The follower's lag, per hosted partition.
    for p in cluster.nodes[0]["partitions"]:
        assert _metric(cluster.nodes[0]["metrics_url"], "llmkg_follow_lag", f'"{p}"') == 0


def test_any_server_answers_and_facts_live_in_their_home_partition(
    cluster: LocalCluster,
) -> None:
    vectors: dict[int, np.ndarray] = {}
    for i in range(60):
        f = fact(i + 10_000)
        client = cluster.clients[i % 4]
        r = client.post("/api/v1/allocate", json={"fact": f})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["strategy"] == "partitioned"
        assert body["partition"] == home_partition(f["subject"], "p", f["object"], PARTITIONS)
        vectors[body["node_id"]] = np.array(f["embedding"], dtype=np.float32)
        # The same triple through another server: the same node.
        again = cluster.clients[(i + 1) % 4].post("/api/v1/allocate", json={"fact": f}).json()
        assert "node_id" in again, again
        assert (again["node_id"], again["created"]) == (body["node_id"], False)
    with cluster.db() as conn:
        rows = conn.execute(
            "SELECT partition, count(*) FROM llmkg_nodes WHERE subject LIKE 's1____' "
            "AND NOT deleted GROUP BY partition"
        ).fetchall()
    assert len(rows) == PARTITIONS and sum(n for _, n in rows) == 60
    # Every server finds every fact, and merges the same exact top 10 of all partitions.
    for client in cluster.clients:
        for node_id in list(vectors)[:10]:
            assert client.get(f"/api/v1/nodes/{node_id}").status_code == 200
    query = np.array(fact(77)["embedding"], dtype=np.float32)
    for client in cluster.clients:
        r = client.post("/api/v1/search", json={"query": {"embedding": query.tolist(), "k": 10}})
        body = r.json()
        assert body["partitions"] == {"total": PARTITIONS, "answered": PARTITIONS}
        found = [h["node_id"] for h in body["results"] if h["node_id"] in vectors]
        assert found == exact_top(vectors, query, 10)[: len(found)] and len(found) == 10
    # A delete on one server is seen by all.
    victim = next(iter(vectors))
    assert cluster.clients[2].delete(f"/api/v1/nodes/{victim}").status_code == 200
    for client in cluster.clients:
        assert client.get(f"/api/v1/nodes/{victim}").status_code == 404


def test_a_batch_is_checked_whole_then_placed_in_order(cluster: LocalCluster) -> None:
    """A batch through a partitioned server: one bad fact refuses it all (422 naming the
    fact, nothing stored); a good one answers in order, each fact in its home partition,
    and the same batch again names the same nodes."""
    facts = [fact(30_000 + i) for i in range(12)]
    short = {**facts[5], "embedding": facts[5]["embedding"][:3]}
    r = cluster.clients[1].post("/api/v1/allocate/batch", json={"facts": [*facts[:5], short]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "facts[5].embedding", r.text
    with cluster.db() as conn:
        stored = conn.execute("SELECT count(*) FROM llmkg_nodes WHERE subject LIKE 's3____'")
        assert stored.fetchone() == (0,)
    r = cluster.clients[1].post("/api/v1/allocate/batch", json={"facts": facts})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    homes = [home_partition(f["subject"], "p", f["object"], PARTITIONS) for f in facts]
    assert [b["partition"] for b in results] == homes and all(b["created"] for b in results)
    again = cluster.clients[2].post("/api/v1/allocate/batch", json={"facts": facts}).json()
    assert [(b["node_id"], b["created"]) for b in again["results"]] == [
        (b["node_id"], False) for b in results
    ]
    for b, f in zip(results, facts, strict=True):
        node = cluster.clients[3].get(f"/api/v1/nodes/{b['node_id']}").json()
        assert node["fact"]["subject"] == f["subject"]


def test_the_graph_reads_cover_every_partition(cluster: LocalCluster) -> None:
    """Patterns, entities, children and ancestors, traversals, a search's expansion and
    the export, on any server, read every partition: the database answers them."""
    a, b = cluster.clients[0], cluster.clients[3]
    chain = ["Pho is_a dog", "dog is_a animal", "animal is_a organism"]
    vector = np.array(fact(900)["embedding"])
    ids = []
    for i, text in enumerate(chain):
        subject, predicate, object = text.split()
        if i:  # close to the one before: each fact is placed under it
            vector = vector + 0.3 * np.array(fact(901 + i)["embedding"])
            vector /= np.linalg.norm(vector)
        f = {"subject": subject, "predicate": predicate, "object": object, "confidence": 0.9}
        f["embedding"] = vector.tolist()
        ids.append(a.post("/api/v1/allocate", json={"fact": f}).json()["node_id"])
    with cluster.db() as conn:
        homes = dict(
            conn.execute("SELECT id, partition FROM llmkg_nodes WHERE id = ANY(%s)", (ids,))
        )
    assert len(set(homes.values())) > 1, "the chain is meant to cross partitions"
    parents = [b.get(f"/api/v1/nodes/{i}").json()["parent"] for i in ids]
    assert parents == [None, ids[0], ids[1]]
    page = b.get("/api/v1/facts", params={"predicate": "is_a", "limit": 100}).json()
    assert [f["node_id"] for f in page["facts"]] == ids
    assert b.get("/api/v1/entities/dog").json()["predicates"] == {"is_a": 2}
    children = b.get(f"/api/v1/nodes/{ids[0]}/children").json()
    assert [c["node_id"] for c in children["children"]] == [ids[1]]
    ancestors = b.get(f"/api/v1/nodes/{ids[2]}/ancestors").json()
    assert [n["node_id"] for n in ancestors["ancestors"]] == [ids[1], ids[0]]
    walk = b.post("/api/v1/traverse", json={"start": {"entities": ["Pho"]}, "hops": 3}).json()
    assert [(f["node_id"], f["hop"]) for f in walk["facts"]] == [
        (ids[0], 1),
        (ids[1], 2),
        (ids[2], 3),
    ]
    query = {"embedding": fact(900)["embedding"], "k": 1, "expand": {"hops": 2}}
    found = b.post("/api/v1/search", json={"query": query}).json()
    assert found["partitions"]["answered"] == PARTITIONS
    assert {e["node_id"] for e in found["expanded"]} >= {ids[1]}
    exported = [line for line in b.get("/api/v1/export").text.splitlines() if line]
    with cluster.db() as conn:
        live = conn.execute("SELECT count(*) FROM llmkg_nodes WHERE NOT deleted").fetchone()
    assert live is not None and len(exported) == live[0]


def _metric(url: str, name: str, labels: str) -> float | None:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + "{") and labels in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_server_killed_under_load(cluster: LocalCluster) -> None:
    """8 threads allocate and 4 search through the other servers while one is killed
    with SIGKILL: no acknowledged allocation lost, no triple stored twice; searches answer
    from all 8 partitions or 503 (never 500, never partial); the breaker for the dead
    server opens, and closes once it is back."""
    victim = 3
    others = [i for i in range(4) if i != victim]
    facts = [fact(20_000 + i) for i in range(160)]
    orders = [random.Random(t).sample(facts, len(facts)) for t in range(8)]
    view = LocalCluster({**cluster.spec, "nodes": [cluster.nodes[i] for i in others]}, cluster.root)
    load = Load(view, orders).start()
    outcomes: list[int] = []
    refusals: list[str] = []
    stop = threading.Event()

    def search(t: int) -> None:
        with httpx.Client(base_url=cluster.nodes[others[t % 3]]["url"], timeout=30) as c:
            n = 0
            while not stop.is_set() and n < 400:
                q = {"query": {"embedding": fact(t * 1000 + n)["embedding"], "k": 5}}
                r = c.post("/api/v1/search", json=q)
                if r.status_code == 200:
                    assert r.json()["partitions"]["answered"] == PARTITIONS
                else:
                    refusals.append(r.text)
                outcomes.append(r.status_code)
                n += 1

    searchers = [threading.Thread(target=search, args=(t,)) for t in range(4)]
    for s in searchers:
        s.start()
    until(lambda: load.count() >= 200, timeout=120, what="200 acknowledgements")
    cluster.kill(victim)
    dead = cluster.nodes[victim]["grpc"]
    watcher = cluster.nodes[others[0]]["metrics_url"]
    until(
        lambda: _metric(watcher, "llmkg_circuit_breaker_state", f'peer="{dead}"') == 2,
        timeout=60,
        what="the dead server's breaker open",
    )
    load.join()
    stop.set()
    for s in searchers:
        s.join(60)
    assert not load.failures and load.unacked == 0, (load.failures[:3], load.unacked)
    assert set(outcomes) <= {200, 503}, sorted(set(outcomes))
    assert outcomes.count(200) >= 0.99 * len(outcomes), (len(outcomes), refusals[:5])
    ids: dict[str, set[int]] = {}
    for subject, node_id, _ in load.acked:
        ids.setdefault(subject, set()).add(node_id)
    assert len(ids) == 160 and all(len(v) == 1 for v in ids.values())
    with cluster.db() as conn:
        dupes = conn.execute(
            "SELECT subject FROM llmkg_nodes WHERE NOT deleted AND subject LIKE 's2____' "
            "GROUP BY subject, predicate, object HAVING count(*) > 1"
        ).fetchall()
    assert dupes == []
    cluster.restart(victim)
    until(
        lambda: _metric(watcher, "llmkg_circuit_breaker_state", f'peer="{dead}"') == 0,
        timeout=90,
        what="the breaker closed again",
    )
    # The restarted server answers as the others.
    q = {"query": {"embedding": fact(5)["embedding"], "k": 10}}
    answers = [c.post("/api/v1/search", json=q).json()["results"] for c in cluster.clients]
    assert all(a == answers[0] for a in answers)
    for subject, node_ids in list(ids.items())[:20]:
        r = cluster.clients[victim].get(f"/api/v1/nodes/{next(iter(node_ids))}")
        assert r.status_code == 200 and r.json()["fact"]["subject"] == subject


def test_a_stopped_server_costs_no_request_past_its_deadline(cluster: LocalCluster) -> None:
    """SIGSTOP of a server: a request never waits for it past the deadline between
    servers (a partition it cannot reach in time makes the answer 503, never a hang or a
    partial answer), and the traffic moves to the partitions' other replicas."""
    frozen = 1
    pid = cluster.nodes[frozen]["pid"]
    deadline = 2.0  # communication_timeout (FAST)
    os.kill(pid, signal.SIGSTOP)
    try:
        client = cluster.clients[0]
        statuses: list[int] = []
        for n in range(30):
            q = {"query": {"embedding": fact(n)["embedding"], "k": 3}}
            started = time.monotonic()
            r = client.post("/api/v1/search", json=q)
            took = time.monotonic() - started
            statuses.append(r.status_code)
            # Bounded by the deadline (a hang would last until the peer woke up).
            assert took < 3 * deadline, (n, took)
            if r.status_code == 503:
                assert r.json()["error"]["code"] == "partition_unavailable"
        assert set(statuses) <= {200, 503}
        assert statuses[-10:] == [200] * 10, statuses
    finally:
        os.kill(pid, signal.SIGCONT)


def test_one_search_shows_its_fan_out_as_child_spans() -> None:
    """Tracing on: a search sent with a ``traceparent`` to one server is one trace, with a
    client span per partition call under the request's span and the called servers'
    spans under those."""
    from otlplib import OtlpReceiver

    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    caller = "00f067aa0ba902b7"
    with OtlpReceiver() as receiver:
        tracing = {
            "LLMKG__MONITORING__ENABLE_TRACING": "true",
            "LLMKG__MONITORING__SAMPLE_RATE": "1.0",
            "LLMKG__MONITORING__OTLP_ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "50",  # export every 50 ms
        }
        with local_cluster(replicas=2, partitions=4, nodes=2, env={**FAST, **tracing}) as c:
            query = {"query": {"embedding": fact(1)["embedding"], "k": 3}}
            headers = {"traceparent": f"00-{trace_id}-{caller}-01"}
            r = c.clients[0].post("/api/v1/search", json=query, headers=headers)
            assert r.status_code == 200, r.text

            def searched(got: list[Any]) -> bool:
                mine = [s for s in got if s.trace_id == trace_id]
                return sum(s.name.endswith("/Search") and s.kind == "SERVER" for s in mine) >= 4

            spans = [s for s in receiver.wait_for(searched) if s.trace_id == trace_id]
    (request,) = [s for s in spans if s.name == "POST /api/v1/search"]
    assert request.parent_span_id == caller
    calls = [s for s in spans if s.name.endswith("/Search") and s.kind == "CLIENT"]
    served = [s for s in spans if s.name.endswith("/Search") and s.kind == "SERVER"]
    assert len(calls) >= 4 and len(served) >= 4, "one call per partition"
    assert all(s.parent_span_id == request.span_id for s in calls)
    assert {s.parent_span_id for s in served} <= {s.span_id for s in calls}
