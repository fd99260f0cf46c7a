"""Concurrent single-node inserts into the index, coalesced into batches.

An index insert takes the graph's write lock for an instant and then links under its read
lock; a second insert's write lock waits until the first has linked. Allocations arriving
together would run one after another, each behind the previous one's linking. Here the
first caller becomes the leader: it inserts everything queued meanwhile in one `add`
(one write lock, linking in parallel), while the others wait for their batch. Then it
hands the lead to the first caller that queued meanwhile, which inserts the next batch,
and returns: a leader inserts one batch, its own, so under a steady stream no caller
works for all the others (a leader that looped until the queue ran dry took 70 ms at
the 99th percentile under k6, for an insert of about 1 ms). Alone, an insert is a batch
of one: nothing waits.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from llmkg._core import HnswIndex


@dataclass
class _Insert:
    node_id: int
    vector: np.ndarray
    precision: str
    # Set when the insert is done, or when its caller is to lead the next batch.
    woken: threading.Event = field(default_factory=threading.Event)
    done: bool = False
    error: BaseException | None = None


class BatchedInserts:
    def __init__(self, index: HnswIndex) -> None:
        self.index = index
        self._lock = threading.Lock()
        self._queue: list[_Insert] = []
        self._leading = False  # a batch is being inserted, or its leader is waking
        self.batches = 0  # index.add calls made (for stats and tests)
        self.inserted = 0

    def add(self, node_id: int, vector: np.ndarray, precision: str) -> None:
        """Insert one node; returns once it is linked into the index."""
        mine = _Insert(node_id, vector, precision)
        with self._lock:
            self._queue.append(mine)
            waits = self._leading
            self._leading = True
        if waits:
            mine.woken.wait()
        if not mine.done:
            self._lead()
        if mine.error is not None:
            raise mine.error

    def _lead(self) -> None:
        """Insert the queue as it is now (the leader's own insert with it)."""
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            self.index.add(
                np.array([b.node_id for b in batch], dtype=np.uint64),
                np.stack([b.vector for b in batch]),
                precision=[b.precision for b in batch],
            )
            self.batches += 1
            self.inserted += len(batch)
        except BaseException as e:  # every waiter learns of it, not just the leader
            for b in batch:
                b.error = e
        for b in batch:
            b.done = True
            b.woken.set()
        with self._lock:
            if self._queue:
                self._queue[0].woken.set()  # not done: it leads the next batch
            else:
                self._leading = False
