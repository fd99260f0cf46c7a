"""Power-loss cycles of a real server: clients allocate over HTTP and note each
acknowledged allocation (outside the lazy disk), the server is killed with SIGKILL, the
power is cut, and a new server on the disk after the reboot is checked."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable

import httpx
from powerlib import LazyMount
from serverlib import Server, fact

# node id -> (the fact's number for serverlib.fact, monotonic time of the 200)
Acked = dict[int, tuple[int, float]]


class ServerCycle:
    def __init__(
        self,
        disk: LazyMount,
        rng: random.Random,
        seed: int,
        durability: str,
        sync_interval: float = 1.0,
    ) -> None:
        self.disk, self.rng, self.seed = disk, rng, seed
        self.env = {
            "LLMKG__STORAGE__PERSISTENCE__DURABILITY": durability,
            "LLMKG__STORAGE__PERSISTENCE__SYNC_INTERVAL": f"{sync_interval}s",
            # Snapshots are written during the cycle too, through the lazy disk.
            "LLMKG__STORAGE__PERSISTENCE__CHECKPOINT_INTERVAL": "1s",
        }
        self.root = disk.backing.parent

    def server(self, name: str, data: str) -> Server:
        return Server(self.root / name, env={**self.env, "LLMKG__STORAGE__DATA_DIRECTORY": data})

    def write_kill_cut(
        self,
        run: int,
        until: Callable[[int, float], bool],
        clients: int = 4,
        after_checkpoint: bool = False,
    ) -> tuple[Acked, float]:
        """Allocate until ``until(acknowledged, seconds between first and last)`` (and,
        with ``after_checkpoint``, until the next index snapshot), then SIGKILL the server
        and cut the power: (acknowledged, time of the kill)."""
        self.disk.start()
        server = self.server(f"run{run}", str(self.disk.mountpoint / "data")).start()
        acked: Acked = {}
        refused: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(t: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                j = 0
                while not stop.is_set():
                    i = run * 1_000_000 + t * 100_000 + j
                    try:
                        r = http.post("/api/v1/allocate", json={"fact": fact(i)})
                    except httpx.HTTPError:
                        return  # the server is gone
                    now = time.monotonic()
                    with lock:
                        if r.status_code == 200:
                            acked[r.json()["node_id"]] = (i, now)
                        else:
                            refused.append(f"{r.status_code} {r.text}")
                            return
                    j += 1

        threads = [threading.Thread(target=client, args=(t,), daemon=True) for t in range(clients)]
        try:
            for th in threads:
                th.start()
            deadline = time.monotonic() + 60
            while True:
                with lock:
                    times = [t for _, t in acked.values()]
                    if refused or (times and until(len(times), max(times) - min(times))):
                        break
                assert time.monotonic() < deadline, f"seed {self.seed}: clients too slow"
                time.sleep(0.01)
            if after_checkpoint:
                first = server.client.get("/api/v1/stats").json()["snapshot_seq"]
                while server.client.get("/api/v1/stats").json()["snapshot_seq"] == first:
                    assert time.monotonic() < deadline, f"seed {self.seed}: no checkpoint"
                    time.sleep(0.01)
            killed_at = time.monotonic()
        finally:
            server.stop(signal.SIGKILL)
            stop.set()
            for th in threads:
                th.join(timeout=30)
        assert not refused, f"seed {self.seed}, cycle {run}: refused: {refused[:3]}"
        self.disk.cut()
        self.disk.stop()
        return acked, killed_at

    def check_after_reboot(self, run: int, acked: Acked, must_survive: set[int]) -> None:
        """A server on the disk after the reboot has every allocation of ``must_survive``,
        its index matches its store, searches find nodes and new allocations work."""
        where = f"seed {self.seed}, cycle {run}"
        server = self.server(f"reboot{run}", str(self.disk.backing / "data")).start()
        try:
            lost = []
            for node_id in sorted(must_survive):
                r = server.client.get(f"/api/v1/nodes/{node_id}")
                i = acked[node_id][0]
                if r.status_code != 200 or r.json()["fact"]["subject"] != f"s{i}":
                    lost.append(node_id)
            assert not lost, f"{where}: {len(lost)} of {len(must_survive)} lost: {lost[:10]}"
            gone = sum(server.client.get(f"/api/v1/nodes/{n}").status_code != 200 for n in acked)
            print(f"{where}: {len(acked)} acknowledged, {gone} lost in the window")
            stats = server.client.get("/api/v1/stats").json()
            assert stats["index"]["len"] == stats["nodes"], (
                f"{where}: the index holds {stats['index']['len']} nodes, the store "
                f"{stats['nodes']} (startup {stats['startup']})"
            )
            for node_id in self.rng.sample(sorted(must_survive), min(10, len(must_survive))):
                query = {"embedding": fact(acked[node_id][0])["embedding"], "k": 1}
                hits = server.client.post("/api/v1/search", json={"query": query}).json()
                assert hits["results"][0]["node_id"] == node_id, f"{where}: search of {node_id}"
            r = server.client.post(
                "/api/v1/allocate", json={"fact": fact(run * 1_000_000 + 999_999)}
            )
            assert r.status_code == 200, f"{where}: allocation after the reboot: {r.text}"
            assert server.client.get(f"/api/v1/nodes/{r.json()['node_id']}").status_code == 200
        finally:
            server.stop()
