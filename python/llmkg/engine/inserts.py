"""Index inserts after the commit, on a thread of their own, with read-your-writes.

Linking a node into the graph is an ``ef_construction`` search (1 to 3 ms at 768 dimensions),
and the next insert's slot allocation waits for the write lock until every link under way
has finished: inserts arriving together wait for each other. Under load, most of an
allocation's time was that wait. So an allocation queues its node here once the store has
committed it, and answers; one thread links everything queued meanwhile in one ``add``
on the core's background pool (one low-priority thread per core: linking takes the cores
when requests leave them idle).

Until it is linked a node is *pending*: ``pending()`` gives the pending nodes, which every
search scores exactly and merges with what the index finds, so a node is found from the
moment its allocation returns. A node leaves ``pending()`` only once the index has it, so
a reader that takes ``pending()`` before it searches the index misses nothing.
``wait_idle`` (checkpoints, backups, close) and ``wait_for`` (delete) wait for the linker.
At most ``MAX_PENDING`` nodes wait: beyond, an allocation waits for the linker (every
search scores the pending nodes, so their number bounds that cost).
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from llmkg._core import HnswIndex

log = logging.getLogger("llmkg.engine")

RETRY_SECONDS = 1.0
MAX_PENDING = 256


class BackgroundInserts:
    def __init__(self, index: HnswIndex) -> None:
        self.index = index
        self._cond = threading.Condition()
        # node id -> (vector, precision): queued or being linked.
        self._pending: dict[int, tuple[np.ndarray, str]] = {}
        self._queue: list[int] = []
        self._closed = False
        self.batches = 0  # index.add calls made (for stats and tests)
        self.inserted = 0
        self._added = 0  # nodes queued so far; they are linked in that order
        self._thread = threading.Thread(target=self._run, name="llmkg-linker", daemon=True)
        self._thread.start()

    def add(self, node_id: int, vector: np.ndarray, precision: str) -> None:
        """Queue ``node_id`` for linking; it is in ``pending()`` from now on."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._pending) < MAX_PENDING or self._closed)
            if self._closed:
                raise RuntimeError("the index linker is closed")
            self._pending[node_id] = (vector, precision)
            self._queue.append(node_id)
            self._added += 1
            self._cond.notify_all()

    def pending(self) -> tuple[list[int], list[np.ndarray]]:
        """The ids and vectors of the nodes not yet in the index."""
        with self._cond:
            if not self._pending:
                return [], []
            return list(self._pending), [v for v, _ in self._pending.values()]

    def precision_of(self, node_id: int) -> str | None:
        """The precision a pending node enters the index with (None: not pending)."""
        with self._cond:
            entry = self._pending.get(node_id)
            return None if entry is None else entry[1]

    def __contains__(self, node_id: int) -> bool:
        with self._cond:
            return node_id in self._pending

    def __len__(self) -> int:
        with self._cond:
            return len(self._pending)

    def wait_idle(self) -> None:
        """Return once every node queued before the call is in the index (nodes queued
        meanwhile do not hold it up)."""
        with self._cond:
            queued = self._added
            self._cond.wait_for(lambda: self.inserted >= queued)

    def wait_for(self, node_id: int) -> None:
        """Return once ``node_id`` is in the index (at once if it is not pending)."""
        with self._cond:
            self._cond.wait_for(lambda: node_id not in self._pending)

    def close(self) -> None:
        """Link what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
                entries = [self._pending[i] for i in batch]
            try:
                self.index.add(
                    np.array(batch, dtype=np.uint64),
                    np.stack([v for v, _ in entries]),
                    precision=[p for _, p in entries],
                    background=True,
                )
            except Exception:
                # Not expected (the vectors were validated): the nodes stay pending, so
                # searches still find them and a checkpoint cannot pass them by; retried.
                log.exception("linking %d nodes into the index failed; retrying", len(batch))
                with self._cond:
                    self._queue[:0] = batch
                    self._cond.wait(RETRY_SECONDS)
                continue
            with self._cond:
                for node_id in batch:
                    del self._pending[node_id]
                self.batches += 1
                self.inserted += len(batch)
                self._cond.notify_all()
