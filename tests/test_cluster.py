"""A local cluster of real processes (PostgreSQL, a synchronous standby, llmkg servers)
and its faults: a server killed under load, the primary killed and its standby promoted,
deletes that no restart undoes; and ``llmkg-server cluster up/down`` itself."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from clusterlib import Load, LocalCluster, local_cluster
from pglib import binaries_or_skip
from serverlib import fact, until

from llmkg.cluster import promote
from llmkg.cluster.postgres import alive


def live_rows(cluster: LocalCluster) -> dict[str, list[int]]:
    """The ids of the live rows of each subject, in the database."""
    with cluster.db() as conn:
        rows = conn.execute("SELECT subject, id FROM llmkg_nodes WHERE NOT deleted").fetchall()
    out: dict[str, list[int]] = {}
    for subject, node_id in rows:
        out.setdefault(subject, []).append(node_id)
    return out


def assert_all_found(cluster: LocalCluster, acked: dict[str, int]) -> None:
    """Every node finds every acknowledged fact by id, and as the nearest hit of its own
    vector."""
    for client in cluster.clients:
        for subject, node_id in acked.items():
            r = client.get(f"/api/v1/nodes/{node_id}")
            if r.status_code != 200:
                # What each server's follower had applied, and their logs, say why.
                follow = [c.get("/api/v1/stats").json()["follow"] for c in cluster.clients]
                detail = f"{client.base_url} {node_id}: {r.text}\n{follow}\n{cluster.logs()}"
                raise AssertionError(detail)
            assert r.json()["fact"]["subject"] == subject
        for subject, node_id in list(acked.items())[:20]:
            query = {"embedding": fact(int(subject[1:]))["embedding"], "k": 1}
            hits = client.post("/api/v1/search", json={"query": query}).json()["results"]
            assert hits[0]["node_id"] == node_id


def one_node_per_fact(load: Load) -> dict[str, int]:
    """Every acknowledgement of a fact named the same node, and at most one created it."""
    ids: dict[str, set[int]] = {}
    created: dict[str, int] = {}
    for subject, node_id, was_created in load.acked:
        ids.setdefault(subject, set()).add(node_id)
        created[subject] = created.get(subject, 0) + was_created
    assert all(len(v) == 1 for v in ids.values()), {k: v for k, v in ids.items() if len(v) > 1}
    assert all(n <= 1 for n in created.values()), "a fact was created twice"
    return {subject: next(iter(v)) for subject, v in ids.items()}


def test_a_server_killed_under_load_loses_nothing() -> None:
    """8 threads allocate through 3 servers, the same 120 facts each, in their own order:
    one server is killed with SIGKILL midway. Every acknowledged allocation is kept, no
    fact is stored twice, and the restarted server catches up and answers as the others."""
    with local_cluster(replicas=3) as cluster:
        facts = [fact(i) for i in range(120)]
        orders = [random.Random(t).sample(facts, len(facts)) for t in range(8)]
        load = Load(cluster, orders).start()
        until(lambda: load.count() >= 150, timeout=120, what="150 acknowledgements")
        cluster.kill(1)
        load.join()
        assert not load.failures and load.unacked == 0, (load.failures, load.unacked)
        acked = one_node_per_fact(load)
        assert len(acked) == 120
        rows = live_rows(cluster)
        assert {s: ids[0] for s, ids in rows.items()} == acked
        assert all(len(ids) == 1 for ids in rows.values()), "a fact stored twice"

        cluster.restart(1)
        assert_all_found(cluster, acked)
        for i in range(0, 120, 15):
            query = {"query": {"embedding": fact(1000 + i)["embedding"], "k": 10}}
            answers = [c.post("/api/v1/search", json=query).json() for c in cluster.clients]
            assert answers[1] == answers[0] == answers[2]


def test_the_primary_killed_then_its_synchronous_standby_promoted() -> None:
    """The primary is killed with SIGKILL while 8 threads allocate through 2 servers.
    No acknowledged allocation is lost; until a primary is back, writes answer 503 (never
    500) with Retry-After and searches keep answering from the servers' copies; writes
    succeed again within 5 s of the promotion."""
    with local_cluster(replicas=2, standby=True) as cluster:
        facts = [[fact(t * 1000 + j) for j in range(40)] for t in range(8)]
        load = Load(cluster, facts).start()
        until(lambda: load.count() >= 60, timeout=120, what="60 acknowledgements")
        primary = cluster.spec["postgres"]["pid"]
        os.kill(primary, 9)
        until(lambda: not alive(primary), timeout=30, what="the primary gone")

        # No primary: a write is refused with 503 and Retry-After, and searches answer.
        probe = {"fact": fact(99_999)}
        for client in cluster.clients:
            r = client.post("/api/v1/allocate", json=probe)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "store_unavailable"
            assert "retry-after" in r.headers
            query = {"query": {"embedding": fact(0)["embedding"], "k": 5}}
            r = client.post("/api/v1/search", json=query)
            assert r.status_code == 200 and len(r.json()["results"]) == 5, r.text
            assert client.get("/health/ready").status_code == 200

        promote(cluster.root)
        cluster.spec = json.loads((cluster.root / "cluster.json").read_text())
        promoted = time.monotonic()
        written = False
        while not written and time.monotonic() - promoted < 5.0:
            written = cluster.clients[0].post("/api/v1/allocate", json=probe).status_code == 200
            time.sleep(0.05)
        assert written, "no write succeeded within 5 s of the promotion"

        load.join()
        assert not load.failures and load.unacked == 0, (load.failures, load.unacked)
        assert load.refusals, "the load saw no refusal: the primary died after it"
        for _, body, headers in load.refusals:
            assert body["error"]["code"] in ("store_unavailable", "not_caught_up"), body
            assert "retry-after" in headers
        acked = one_node_per_fact(load)
        assert len(acked) == 8 * 40
        rows = live_rows(cluster)
        assert all(rows.get(s) == [node_id] for s, node_id in acked.items())
        assert_all_found(cluster, acked)


def test_a_delete_is_never_undone_by_another_servers_copy() -> None:
    """A fact allocated and snapshotted on one server, deleted on the other: restarts, in
    either order, and a checkpoint on the server that still had it, bring it back on
    neither server."""
    with local_cluster(replicas=2) as cluster:
        a, b = cluster.clients
        kept = [a.post("/api/v1/allocate", json={"fact": fact(i)}).json() for i in range(5)]
        assert a.post("/api/v1/admin/checkpoint").status_code == 200
        victim = kept[2]["node_id"]
        assert b.delete(f"/api/v1/nodes/{victim}").status_code == 200

        def gone_everywhere() -> None:
            for client in cluster.clients:
                assert client.get(f"/api/v1/nodes/{victim}").status_code == 404
                query = {"query": {"embedding": fact(2)["embedding"], "k": 5}}
                hits = client.post("/api/v1/search", json=query).json()["results"]
                assert victim not in [h["node_id"] for h in hits]

        gone_everywhere()
        for order in ((0, 1), (1, 0)):
            for i in order:
                cluster.kill(i)
                cluster.restart(i)
                gone_everywhere()
        # The server restarted from a snapshot that held the node checkpoints again.
        assert a.post("/api/v1/admin/checkpoint").status_code == 200
        cluster.kill(0)
        cluster.restart(0)
        gone_everywhere()
        with cluster.db() as conn:
            row = conn.execute("SELECT deleted FROM llmkg_nodes WHERE id = %s", (victim,))
            assert row.fetchone() == (True,)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMKG")}
    return subprocess.run(
        [sys.executable, "-m", "llmkg.server.cli", "cluster", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _pids(spec: dict[str, Any]) -> list[int]:
    pg = spec["postgres"]
    return [pg["pid"], pg["standby"]["pid"]] + [n["pid"] for n in spec["nodes"]]


def test_cluster_up_and_down_from_the_command_line() -> None:
    binaries_or_skip()
    root = Path(tempfile.mkdtemp(prefix="llmkg-cluster-cli-"))
    root.chmod(0o755)
    folder = root / "c"
    try:
        up = _cli("up", "--dir", str(folder), "--replicas", "2", "--standby", "--dim", "8")
        assert up.returncode == 0, up.stderr
        spec = json.loads((folder / "cluster.json").read_text())
        assert json.loads(up.stdout) == {"cluster": str(folder / "cluster.json")}
        assert oct((folder / "cluster.json").stat().st_mode & 0o777) == "0o600"
        assert [n["name"] for n in spec["nodes"]] == ["node0", "node1"]
        assert all(alive(pid) for pid in _pids(spec))
        assert str(folder / "nodes" / "node0" / "server.log") in up.stderr  # where the logs are
        # The servers' DSN names both database servers, the writable one chosen.
        dsn = (folder / "postgres.dsn").read_text()
        ports = f"{spec['postgres']['port']},127.0.0.1:{spec['postgres']['standby']['port']}"
        assert ports in dsn and "target_session_attrs=read-write" in dsn
        assert spec["nodes"][0]["env"]["LLMKG__STORAGE__POSTGRESQL__DSN_FILE"].endswith(".dsn")

        import httpx

        one = {"subject": "Pho", "predicate": "is_a", "object": "dog", "confidence": 0.9}
        written = httpx.post(spec["nodes"][0]["url"] + "/api/v1/allocate", json={"fact": one})
        node_id = written.json()["node_id"]
        read = httpx.get(f"{spec['nodes'][1]['url']}/api/v1/nodes/{node_id}")
        assert read.status_code == 200 and read.json()["fact"]["subject"] == "Pho"

        again = _cli("up", "--dir", str(folder))
        assert again.returncode == 1 and "not empty" in again.stderr

        stopped = _cli("down", "--dir", str(folder))
        assert stopped.returncode == 0, stopped.stderr
        until(lambda: not any(alive(pid) for pid in _pids(spec)), timeout=60, what="all stopped")
        assert (folder / "nodes" / "node0" / "server.log").exists()  # kept without --clean
        assert _cli("down", "--dir", str(folder), "--clean").returncode == 0
        assert not folder.exists()
    finally:
        if (folder / "cluster.json").exists():
            _cli("down", "--dir", str(folder), "--clean")
        root.rmdir()


@pytest.mark.parametrize("args", [["--replicas", "0"], ["--dim", "0"], ["--base-port", "80"]])
def test_cluster_up_refuses_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    done = _cli("up", "--dir", str(tmp_path / "c"), *args)
    assert done.returncode == 1 and args[0] in done.stderr
    assert not (tmp_path / "c").exists()
