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
``wait_idle`` (checkpoints, backups, close) waits for the linker, at most ``timeout``
seconds (``LinkerTimeoutError``); ``discard`` (delete) drops a node not yet linked, or
waits for its link under way. At most ``MAX_PENDING`` nodes wait (give or take the
allocations under way): beyond, an allocation waits (``wait_room``, before it commits)
for the linker (every search scores the pending nodes, so their number bounds that cost).

A failed link (not expected: the vectors were validated) leaves its nodes pending, so
searches still find them and a checkpoint cannot pass them by, and is retried after a
delay that doubles up to ``max_retry_delay``. After ``max_attempts`` failures in a row the
linker is *failing*: readiness and the stats say so, and waits on it fail at once with
``LinkerError`` instead of holding a checkpoint or a request for their whole deadline.
It keeps retrying at the longest delay, and is healthy again after one link succeeds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from llmkg._core import HnswIndex

if TYPE_CHECKING:
    from llmkg.engine.quantization import Precision

log = logging.getLogger("llmkg.engine")

MAX_PENDING = 256
TIMEOUT = 30.0  # seconds a wait on the linker lasts at most, by default
MAX_ATTEMPTS = 5  # failed links in a row that make the linker "failing"
RETRY_DELAY = 1.0  # seconds before the first retry of a failed link; doubles each time
MAX_RETRY_DELAY = 60.0


class LinkerError(RuntimeError):
    """The index linker cannot link now (it keeps failing, or it stopped): the nodes stay
    searchable, but what needs them in the index (a checkpoint) cannot proceed."""


class LinkerTimeoutError(LinkerError, TimeoutError):
    """A wait on the index linker lasted longer than its deadline."""


def retry_delay(failures: int, first: float, longest: float) -> float:
    """The wait before the next attempt after ``failures`` failed links in a row."""
    return float(min(first * 2 ** max(failures - 1, 0), longest))


class BackgroundInserts:
    def __init__(
        self,
        index: HnswIndex,
        *,
        timeout: float = TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
        retry_delay: float = RETRY_DELAY,
        max_retry_delay: float = MAX_RETRY_DELAY,
    ) -> None:
        self.index = index
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._cond = threading.Condition()
        # node id -> (vector, precision, ordinal): queued or being linked, oldest first.
        self._pending: dict[int, tuple[np.ndarray, Precision, int]] = {}
        self._queue: list[int] = []
        self._linking: set[int] = set()  # the batch in index.add right now
        self._closed = False
        self._stopped = False  # the thread has ended
        self.batches = 0  # index.add calls made (for stats and tests)
        self.inserted = 0
        self.failures = 0  # failed links in a row
        self.failed_links = 0  # failed links in all
        self.last_error: str | None = None
        self._added = 0  # nodes queued so far; each gets the next ordinal
        self._thread = threading.Thread(target=self._run, name="llmkg-linker", daemon=True)
        self._thread.start()

    @property
    def failing(self) -> bool:
        """Whether the linker has failed ``max_attempts`` links in a row (or stopped)."""
        return self.failures >= self.max_attempts or self._stopped

    def health(self) -> tuple[bool, str]:
        with self._cond:
            detail = f"{len(self._pending)} pending, {self.failed_links} failed links"
            if self._stopped and not self._closed:
                return False, f"the linker has stopped; {detail}"
            if self.failing:
                return False, f"{self.failures} links failed in a row ({self.last_error}); {detail}"
            return True, detail

    def _unavailable(self) -> LinkerError:
        if self._stopped:
            return LinkerError("the index linker has stopped")
        return LinkerError(
            f"the index linker is failing ({self.failures} links failed in a row: "
            f"{self.last_error}); the nodes stay searchable"
        )

    def _wait(self, done: Callable[[], bool], timeout: float | None, what: str) -> None:
        """Wait (holding ``_cond``) until ``done()``; raises once the linker is failing or
        after ``timeout`` seconds (default ``self.timeout``)."""
        limit = self.timeout if timeout is None else timeout
        if not self._cond.wait_for(lambda: done() or self.failing, limit):
            raise LinkerTimeoutError(f"the index linker did not {what} within {limit:g}s")
        if not done():
            raise self._unavailable()

    def wait_room(self, timeout: float | None = None) -> None:
        """Return once fewer than ``MAX_PENDING`` nodes wait for their link. An allocation
        calls it before it commits, so that a refusal leaves nothing half done."""
        with self._cond:
            self._wait(lambda: len(self._pending) < MAX_PENDING, timeout, "make room")

    def add(self, node_id: int, vector: np.ndarray, precision: Precision) -> None:
        """Queue ``node_id`` for linking; it is in ``pending()`` from now on. Never waits
        (the node is committed already: see ``wait_room``)."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the index linker is closed")
            self._added += 1
            self._pending[node_id] = (vector, precision, self._added)
            self._queue.append(node_id)
            self._cond.notify_all()

    def pending(self) -> tuple[list[int], list[np.ndarray]]:
        """The ids and vectors of the nodes not yet in the index."""
        with self._cond:
            if not self._pending:
                return [], []
            return list(self._pending), [v for v, _, _ in self._pending.values()]

    def precision_of(self, node_id: int) -> Precision | None:
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

    def wait_idle(self, timeout: float | None = None) -> None:
        """Return once every node queued before the call is in the index (nodes queued
        meanwhile do not hold it up)."""
        with self._cond:
            queued = self._added
            # Oldest first: the first pending node is the oldest one not yet linked.
            self._wait(
                lambda: not self._pending or next(iter(self._pending.values()))[2] > queued,
                timeout,
                "link the nodes queued",
            )

    def wait_for(self, node_id: int, timeout: float | None = None) -> None:
        """Return once ``node_id`` is in the index (at once if it is not pending)."""
        with self._cond:
            self._wait(lambda: node_id not in self._pending, timeout, f"link node {node_id}")

    def discard(self, node_id: int, timeout: float | None = None) -> None:
        """Make sure ``node_id`` is not linked after this returns (a delete): dropped if it
        is still queued, else its link under way is waited for (the caller removes it
        from the index)."""
        with self._cond:
            # Not failed fast while the linker is failing: an attempt under way ends soon,
            # linked or back in the queue, and from there the node can be dropped.
            limit = self.timeout if timeout is None else timeout
            if not self._cond.wait_for(lambda: node_id not in self._linking, limit):
                raise LinkerTimeoutError(f"the index linker did not link node {node_id} in time")
            if self._pending.pop(node_id, None) is not None:
                self._queue.remove(node_id)
                self._cond.notify_all()

    def close(self) -> None:
        """Link what is queued (one attempt if the linker fails), then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self) -> None:
        try:
            while self._link_next():
                pass
        finally:
            with self._cond:
                self._stopped = True
                self._cond.notify_all()
            if self._pending:
                log.warning(
                    "index linker stopped with %d nodes not linked; they are in the store, "
                    "and the next start replays them",
                    len(self._pending),
                )

    def _link_next(self) -> bool:
        """Link what is queued; False once closed with nothing left (or nothing linkable)."""
        with self._cond:
            self._cond.wait_for(lambda: self._queue or self._closed)
            if not self._queue:
                return False
            batch, self._queue = self._queue, []
            self._linking = set(batch)
            entries = [self._pending[i] for i in batch]
        try:
            self.index.add(
                np.array(batch, dtype=np.uint64),
                np.stack([v for v, _, _ in entries]),
                precision=[p for _, p, _ in entries],
                background=True,
            )
        except Exception as e:
            with self._cond:
                self._linking = set()
                self.failures += 1
                self.failed_links += 1
                self.last_error = f"{type(e).__name__}: {e}"
                self._queue[:0] = batch
                self._cond.notify_all()  # waiters fail fast once the linker is failing
                delay = retry_delay(self.failures, self.retry_delay, self.max_retry_delay)
                log.error(
                    "linking %d nodes into the index failed (%d in a row); retrying in %.3gs",
                    len(batch),
                    self.failures,
                    delay,
                    exc_info=self.failures == 1 or self.failures == self.max_attempts,
                )
                if self._closed:
                    return False  # no retries at close: the next start replays the nodes
                # Until the deadline, whatever wakes the condition (an add) does not retry.
                retry_at = time.monotonic() + delay
                while not self._closed and (left := retry_at - time.monotonic()) > 0:
                    self._cond.wait(left)
            return True
        with self._cond:
            for node_id in batch:
                del self._pending[node_id]
            self._linking = set()
            if self.failing:
                log.warning("the index linker links again")
            self.failures = 0
            self.batches += 1
            self.inserted += len(batch)
            self._cond.notify_all()
        return True
