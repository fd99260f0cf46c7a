"""Local clusters for tests: ``llmkg.cluster.up`` in a directory the ``postgres`` user can
enter, small fast servers, clients per node, and the restart of a node exactly as
``cluster.json`` describes it."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pglib import binaries_or_skip

from llmkg.cluster import ClusterError, down, restart_node, up
from llmkg.cluster.local import wait_ready

# Small and quick: a 16-d space, no drain delay, the readiness recomputed on each probe,
# record caches sized for a test's few hundred facts (a partitioned server holds an
# engine per partition, each with its caches).
NODE_ENV = {
    "LLMKG__SCALABILITY__CACHE__L1_SIZE": "10000",
    "LLMKG__SCALABILITY__CACHE__L2_SIZE": "100000",
    "LLMKG__SERVER__DRAIN_DELAY": "0s",
    "LLMKG__PERFORMANCE__WORKER_THREADS": "4",
    "LLMKG__HEALTH_CHECKS__READINESS_PROBE_INTERVAL": "0s",
    "LLMKG__STORAGE__POSTGRESQL__CONNECT_TIMEOUT": "2s",
}


class LocalCluster:
    def __init__(self, spec: dict[str, Any], root: Path) -> None:
        self.spec, self.root = spec, root
        self.clients = [httpx.Client(base_url=n["url"], timeout=30) for n in self.nodes]

    @property
    def nodes(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = self.spec["nodes"]
        return nodes

    def restart(self, i: int) -> None:
        """Start node ``i`` again from its ``argv`` and ``env``, and wait until it is ready."""
        node = self.nodes[i]
        # Recorded in cluster.json: the stop at the end finds the new process too.
        node["pid"] = restart_node(self.root, node["name"])["pid"]
        try:
            wait_ready([node], timeout=120)
        except ClusterError as e:
            readiness = httpx.get(node["url"] + "/health/ready", timeout=5).text
            raise AssertionError(f"{e}\n{readiness}\n{self.logs()}") from None

    def kill(self, i: int) -> None:
        """``kill -9`` node ``i`` and wait until it is gone."""
        pid = self.nodes[i]["pid"]
        os.kill(pid, 9)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)  # a child of this process: reaped, not left a zombie

    def db(self) -> psycopg.Connection[Any]:
        """A connection to the current primary."""
        return psycopg.connect(self.spec["postgres"]["dsn"], autocommit=True, connect_timeout=10)

    def logs(self) -> str:
        return "\n".join(
            f"--- {n['name']}\n" + Path(n["log"]).read_text(errors="replace")[-4000:]
            for n in self.nodes
        )


@contextlib.contextmanager
def local_cluster(
    replicas: int,
    standby: bool = False,
    partitions: int = 1,
    nodes: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[LocalCluster]:
    binaries_or_skip()
    # Under /tmp, searchable by all: as root, PostgreSQL runs as `postgres`, which must
    # reach its directories inside.
    root = Path(tempfile.mkdtemp(prefix="llmkg-cluster-"))
    root.chmod(0o755)
    spec = up(
        root / "c",
        replicas=replicas,
        standby=standby,
        dim=16,
        environ={**NODE_ENV, **(env or {})},
        partitions=partitions,
        nodes=nodes,
    )
    cluster = LocalCluster(spec, root / "c")
    try:
        yield cluster
    finally:
        for client in cluster.clients:
            client.close()
        down(root / "c", clean=True)
        with contextlib.suppress(OSError):
            root.rmdir()


class Load:
    """``threads`` threads that allocate facts through the nodes until each of its facts
    is acknowledged (200) or the deadline passes: on a refused connection, a timeout or a
    503 the fact goes to the next node. Records every acknowledgement and every answer
    that was not one."""

    def __init__(
        self,
        cluster: LocalCluster,
        facts_of: list[list[dict[str, Any]]],
        deadline: float = 240.0,
    ) -> None:
        self.cluster = cluster
        self.facts_of = facts_of
        self.deadline = time.monotonic() + deadline
        self.lock = threading.Lock()
        self.acked: list[tuple[str, int, bool]] = []  # (subject, node id, created)
        self.refusals: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self.failures: list[str] = []  # answers that are neither 200 nor 503
        self.unacked = 0
        self.threads = [
            threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(len(facts_of))
        ]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def join(self) -> None:
        for t in self.threads:
            t.join(max(1.0, self.deadline - time.monotonic() + 60))
            assert not t.is_alive(), "a load thread is stuck"

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _run(self, t: int) -> None:
        clients = [httpx.Client(base_url=n["url"], timeout=10) for n in self.cluster.nodes]
        turn = t
        try:
            for fact in self.facts_of[t]:
                while time.monotonic() < self.deadline:
                    client = clients[turn % len(clients)]
                    turn += 1
                    try:
                        r = client.post("/api/v1/allocate", json={"fact": fact})
                    except httpx.TransportError:
                        time.sleep(0.01)  # the node is down: the next one
                        continue
                    if r.status_code == 200:
                        body = r.json()
                        with self.lock:
                            self.acked.append((fact["subject"], body["node_id"], body["created"]))
                        break
                    with self.lock:
                        if r.status_code == 503:
                            self.refusals.append((r.status_code, r.json(), dict(r.headers)))
                        else:
                            self.failures.append(f"{r.status_code} {r.text}")
                    time.sleep(0.05)
                else:
                    with self.lock:
                        self.unacked += 1
        finally:
            for client in clients:
                client.close()
