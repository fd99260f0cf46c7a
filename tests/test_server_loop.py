"""The event loop is never blocked by the index's long operations: while a checkpoint of a
100k-node index, a compaction and a precision pass (rebalance) run, a real server keeps
answering live probes and inline searches.

No wall times. A *round* is a live probe then an inline search (k=10), back to back on one
connection; it counts for an operation when it was sent after the operation began and
answered before the operation ended, by the operation's own markers: its HTTP response
(checkpoint, compaction), or the server's log lines around a precision pass. Each
operation must hold several such rounds: a loop blocked for the operation's length
answers at most the one round that blocked it. Requests carry a generous timeout (30 s),
never a latency bound: on a loaded machine a slow answer is not a failure, only an answer
that waits for the operation's end is.

A checkpoint must moreover never make an inline search wait for the lock: the snapshot
is encoded under the read lock, so no inline search is handed to a worker for want of it
(``llmkg_searches_deferred`` stays put, and nothing else writes to the index meanwhile).
That check fails as soon as the snapshot takes the write lock again.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from serverlib import Server

from llmkg._core import HnswIndex
from llmkg.engine.snapshots import write_snapshot
from llmkg.store import SqliteStore

NODES = 100_000
DIM = 32
# Removed nodes in the snapshot: one short of a due compaction (removed nodes reaching a
# tenth of all), so that the test's one DELETE makes the next one run.
REMOVED = 11_111
MIN_ROUNDS = 3

ENV = {
    "LLMKG__SCALABILITY__HNSW__MAX_CONNECTIONS": "8",
    "LLMKG__SCALABILITY__HNSW__EF_CONSTRUCTION": "40",
    "LLMKG__SCALABILITY__CACHE__CACHE_WARMUP_ON_STARTUP": "false",
    # The checkpoint is then the snapshot's encoding and its write, nothing else.
    "LLMKG__STORAGE__COMPRESSION": "none",
    "LLMKG__STORAGE__PERSISTENCE__DURABILITY": "interval",
}


def build(data: Path) -> np.ndarray:
    """A store of ``NODES`` facts and an index snapshot of them (built in-process: far
    faster than allocating them through the server), tagged with the store's last
    sequence. Returns some of the vectors, as queries."""
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(NODES, DIM)).astype(np.float32)
    with SqliteStore(data, durability="interval") as store, ThreadPoolExecutor(16) as pool:
        # Confidence 1: every node stays at full precision until memory runs short, so
        # that no precision pass writes to the index before the test wants one.
        records = list(
            pool.map(lambda i: store.insert(f"s{i}", "p", "o", 1.0, vectors[i])[0], range(NODES))
        )
        seq = store.committed_seq
        store_id = store.store_id
    ids = np.array([r.node_id for r in records], dtype=np.uint64)
    index = HnswIndex(DIM, m=8, ef_construction=40, keep_full=False)
    index.add(ids, np.stack([r.embedding for r in records]), precision="full")
    gone = np.arange(2**40, 2**40 + REMOVED, dtype=np.uint64)
    index.add(gone, rng.normal(size=(REMOVED, DIM)).astype(np.float32), precision="full")
    index.remove(gone)
    assert index.stats()["deleted"] == REMOVED, "compacted too early"
    write_snapshot(data / "snapshots", index, seq, None, store_id, before_publish=lambda: None)
    return vectors[:256]


class Window:
    """An operation under watch: ``began()`` and ``ended()`` say whether it had begun and
    whether it had ended at the moment of the call."""

    def __init__(self, began: Callable[[], bool], ended: Callable[[], bool]) -> None:
        self.began, self.ended = began, ended
        self.rounds = 0  # rounds sent after it began and answered before it ended


class Flags(Window):
    """A window set by the caller around an HTTP request."""

    def __init__(self) -> None:
        self._began, self._ended = threading.Event(), threading.Event()
        super().__init__(self._began.is_set, self._ended.is_set)

    def begin(self) -> None:
        self._began.set()

    def end(self) -> None:
        self._ended.set()


class LogMarks(Window):
    """A window between two lines of the server's log (read as it grows)."""

    def __init__(self, log: Path, first: str, last: str) -> None:
        self._log, self._offset, self._text = log, log.stat().st_size, ""
        self._lock = threading.Lock()
        super().__init__(lambda: self._seen(first), lambda: self._seen(last))

    def _seen(self, text: str) -> bool:
        with self._lock:
            with open(self._log, "rb") as f:
                f.seek(self._offset)
                new = f.read().decode(errors="replace")
            self._offset += len(new.encode())
            # Only the marker lines matter: keep those (the access log grows fast).
            self._text += "".join(line for line in new.splitlines(True) if "precision pass" in line)
            return text in self._text


class Prober:
    """Sends rounds back to back on a thread of its own until stopped."""

    def __init__(self, server: Server, queries: np.ndarray) -> None:
        self.client = httpx.Client(base_url=server.url, timeout=30)
        self.queries = [q.tolist() for q in queries]
        self.window: Window | None = None
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()

    def watch(self, window: Window) -> Window:
        self.window = window
        return window

    def _run(self) -> None:
        i = 0
        while not self._stop.is_set():
            window = self.window
            began = window is not None and window.began()
            live = self.client.get("/health/live")
            query = {"query": {"embedding": self.queries[i % len(self.queries)], "k": 10}}
            search = self.client.post("/api/v1/search", json=query)
            i += 1
            if live.status_code != 200 or search.status_code != 200:
                self.errors.append(f"{live.status_code} {search.status_code}: {search.text}")
            elif len(search.json()["results"]) != 10:
                self.errors.append(f"short answer: {search.text}")
            if began and window is not None and not window.ended():
                window.rounds += 1


def deferred(server: Server) -> float:
    text = httpx.get(server.metrics_url + "/metrics", timeout=30).text
    match = re.search(r"^llmkg_searches_deferred_total (\S+)$", text, re.M)
    assert match, "no llmkg_searches_deferred_total metric"
    return float(match.group(1))


def timed_request(server: Server, window: Flags, method: str, path: str) -> httpx.Response:
    window.begin()
    try:
        return server.client.request(method, path)
    finally:
        window.end()


def test_the_loop_answers_during_a_checkpoint_a_compaction_and_a_precision_pass(
    tmp_path: Path,
) -> None:
    queries = build(tmp_path / "data")

    server = Server(tmp_path, env=ENV, dim=DIM).start()
    try:
        with Prober(server, queries) as prober:
            before = deferred(server)
            checkpoint = prober.watch(Flags())
            assert isinstance(checkpoint, Flags)
            response = timed_request(server, checkpoint, "POST", "/api/v1/admin/checkpoint")
            assert response.status_code == 200, response.text
            assert deferred(server) == before, "an inline search waited for the snapshot's lock"

            compaction = prober.watch(Flags())
            assert isinstance(compaction, Flags)
            # One more removed node makes the compaction due: it runs inside this DELETE.
            response = timed_request(server, compaction, "DELETE", "/api/v1/nodes/1")
            assert response.status_code == 200, response.text
        assert not prober.errors, prober.errors[:3]
        assert checkpoint.rounds >= MIN_ROUNDS, f"{checkpoint.rounds} rounds during the checkpoint"
        assert compaction.rounds >= MIN_ROUNDS, f"{compaction.rounds} rounds during the compaction"
        stats = server.client.get("/api/v1/stats").json()["index"]
        assert stats["deleted"] == 0, "the DELETE did not compact the index"
        assert "compaction:" in server.logs()
    finally:
        server.stop()

    # Again with a memory budget far below the process's size: the engine's background
    # pass (every 5 s) demotes the least important tenth of the nodes.
    # (Readiness would fail on the memory check: it is off.)
    pressure = {
        "LLMKG__PERFORMANCE__MEMORY__BUDGET": "1MB",
        "LLMKG__HEALTH_CHECKS__DEPENDENCIES__CHECK_MEMORY_USAGE": "false",
    }
    pressed = Server(tmp_path, env={**ENV, **pressure}, dim=DIM).start()
    try:
        with Prober(pressed, queries) as prober:
            marks = LogMarks(
                pressed.log_path, "precision pass over every node", "precision pass done"
            )
            prober.watch(marks)
            deadline = time.monotonic() + 60
            while not marks.ended():
                assert time.monotonic() < deadline, "no precision pass within 60 s"
                time.sleep(0.05)
        assert not prober.errors, prober.errors[:3]
        assert marks.rounds >= MIN_ROUNDS, f"{marks.rounds} rounds during the precision pass"
        precisions = pressed.client.get("/api/v1/stats").json()["index"]["precisions"]
        assert precisions["q8"] >= (NODES - 1) // 10, precisions
    finally:
        pressed.stop()
