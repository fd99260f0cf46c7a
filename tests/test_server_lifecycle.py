"""The server's life over real processes: not ready until the store is replayed, drained
and checkpointed at SIGTERM (serving until its listeners close), nothing acknowledged
lost at SIGKILL, and the limits on time and connections."""

from __future__ import annotations

import http.client
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from serverlib import Server, fact, faulty_server, until

from llmkg.store import SqliteStore


def populate(directory: Path, n: int, dim: int) -> None:
    """``n`` facts straight into a store (no index snapshot): a server must rebuild."""
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    with SqliteStore(directory, durability="interval") as store, ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: store.insert(f"s{i}", "p", "o", 0.5, vectors[i]), range(n)))


def test_not_ready_until_the_store_is_replayed(tmp_path: Path) -> None:
    populate(tmp_path / "data", 4000, 64)
    server = Server(tmp_path, dim=64).start(wait=None)
    try:
        server.wait("live")
        early = server.client.get("/health/ready")
        assert early.status_code == 503, "ready before the rebuild of 4000 nodes finished"
        assert early.json()["status"] == "starting"
        assert (
            server.client.post("/api/v1/search", json={"query": {"text": "s1"}}).status_code == 503
        )
        server.wait("ready")
        assert server.client.get("/api/v1/stats").json()["nodes"] == 4000
    finally:
        server.stop()


def test_sigterm_drains_checkpoints_and_exits_0(tmp_path: Path) -> None:
    server = Server(tmp_path, {"LLMKG__SERVER__DRAIN_DELAY": "2s"}).start()
    ids = [server.post("/api/v1/allocate", {"fact": fact(i)}).json()["node_id"] for i in range(20)]
    server.send_signal(signal.SIGTERM)
    # During the drain delay the listener is still open: ready says no, live says yes.
    with httpx.Client(base_url=server.url) as fresh:
        ready = fresh.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        assert fresh.get("/health/live").status_code == 200
    assert server.stop() == 0
    logs = server.logs()
    assert "final checkpoint written" in logs
    snapshots = list((server.data / "snapshots").iterdir())
    assert snapshots, "SIGTERM must leave a snapshot"

    again = Server(tmp_path).start()
    try:
        stats = again.client.get("/api/v1/stats").json()
        assert stats["startup"]["source"] == "snapshot" and stats["startup"]["replayed"] == 0
        for i, node_id in enumerate(ids):
            assert again.client.get(f"/api/v1/nodes/{node_id}").json()["fact"]["subject"] == f"s{i}"
    finally:
        again.stop()


def test_requests_are_served_until_the_listeners_close(tmp_path: Path) -> None:
    """A rolling restart fails no request: during the drain delay only readiness says no,
    and a request in flight when the listeners close (held in its commit) completes."""
    server, faults = faulty_server(tmp_path, {"LLMKG__SERVER__DRAIN_DELAY": "5s"})
    server.start()
    try:
        sent = 0

        def serve_one() -> None:
            nonlocal sent
            f = fact(sent)
            sent += 1
            allocated = server.post("/api/v1/allocate", {"fact": f})
            assert allocated.status_code == 200, allocated.text
            top = server.post("/api/v1/search", {"query": {"embedding": f["embedding"]}})
            assert top.status_code == 200, top.text
            assert top.json()["results"][0]["node_id"] == allocated.json()["node_id"]

        serve_one()
        server.send_signal(signal.SIGTERM)

        def not_ready() -> bool:
            serve_one()  # traffic goes on as a load balancer would send it
            ready = server.client.get("/health/ready")
            return ready.status_code == 503 and ready.json()["status"] == "draining"

        until(not_ready, what="readiness 503 after SIGTERM")
        for _ in range(3):
            serve_one()

        (faults / "hold").touch()
        batch = {"facts": [fact(1000 + i) for i in range(50)]}
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(
                httpx.post, f"{server.url}/api/v1/allocate/batch", json=batch, timeout=60
            )
            until(lambda: (faults / "held").exists(), what="the batch held in its commit")

            def listeners_closed() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", server.http_port), timeout=5).close()
                except ConnectionRefusedError:
                    return True
                return False

            until(listeners_closed, what="listeners closed")
            (faults / "hold").unlink()
            response = in_flight.result(60)
        assert response.status_code == 200, response.text
        ids = [r["node_id"] for r in response.json()["results"]]
        assert server.stop() == 0
    finally:
        server.stop()
    with Server(tmp_path) as again:
        for i, node_id in enumerate(ids):
            got = again.client.get(f"/api/v1/nodes/{node_id}").json()
            assert got["fact"]["subject"] == f"s{1000 + i}"


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    acked: dict[int, list[float]] = {}
    lock = threading.Lock()
    for cycle in range(2):
        server = Server(tmp_path).start()
        stop = threading.Event()

        def writer(
            t: int, server: Server = server, cycle: int = cycle, stop: threading.Event = stop
        ) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                i = 0
                while not stop.is_set():
                    f = fact(cycle * 1_000_000 + t * 10_000 + i)
                    i += 1
                    try:
                        r = client.post("/api/v1/allocate", json={"fact": f})
                    except httpx.TransportError:
                        return  # killed mid-request: not acknowledged
                    if r.status_code == 200:
                        with lock:
                            acked[r.json()["node_id"]] = f["embedding"]

        threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < 50 * (cycle + 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join()
        assert server.stop() == -signal.SIGKILL

    survivor = Server(tmp_path).start()
    try:
        assert len(acked) >= 100
        for node_id, embedding in acked.items():
            assert survivor.client.get(f"/api/v1/nodes/{node_id}").status_code == 200
            top = survivor.post("/api/v1/search", {"query": {"embedding": embedding, "k": 1}})
            assert top.json()["results"][0]["node_id"] == node_id
    finally:
        survivor.stop()


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    env = {
        "LLMKG__SERVER__REQUEST_TIMEOUT": "1ms",
        "LLMKG__SERVER__CONNECTION_TIMEOUT": "1s",
        "LLMKG__SERVER__MAX_CONNECTIONS": "3",
    }
    with Server(tmp_path_factory.mktemp("tight"), env) as server:
        yield server


def test_a_request_past_request_timeout_answers_504(tight: Server) -> None:
    batch = {"facts": [fact(i) for i in range(200)]}
    response = tight.post("/api/v1/allocate/batch", batch)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "timeout"
    assert tight.client.get("/health/live").status_code == 200


def test_idle_keep_alive_connections_are_closed_after_connection_timeout(tight: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", tight.http_port, timeout=10)
    try:
        conn.request("GET", "/health/live")
        response = conn.getresponse()
        assert response.status == 200 and response.read()
        assert conn.sock is not None, "kept alive"
        assert conn.sock.recv(4096) == b"", "the server should close the idle connection"
    finally:
        conn.close()


def test_connections_beyond_max_connections_are_refused_with_503(tight: Server) -> None:
    held = [socket.create_connection(("127.0.0.1", tight.http_port)) for _ in range(3)]

    def refused() -> bool:
        # Until the server has accepted the held connections, the extra one is served.
        with socket.create_connection(("127.0.0.1", tight.http_port)) as extra:
            extra.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            extra.settimeout(10)
            return b" 503 " in extra.recv(4096).split(b"\r\n")[0]

    try:
        until(refused, what="503 beyond max_connections")
    finally:
        for s in held:
            s.close()
    until(lambda: tight.client.get("/health/live").status_code == 200, what="served again")
