"""Following a shared store: the changes that other processes commit to the PostgreSQL
store reach this engine's index, filters and record caches (ARCHITECTURE.md,
"Scale-out: PostgreSQL is the truth, pods follow it").

One thread, the *follower*, applies the store's changes after ``applied`` in sequence
order: a live node is queued for the index linker unless the index (or the linker) holds
it already, its filters and cached record take its current confidence; a deleted node
leaves the linker's queue, the index, the filters and the caches. It polls every
``interval`` seconds and at once when nudged.

The engine's own writes go through the follower too: a write commits, then waits until
the follower has applied its sequence (``wait_applied``). So there is one applier, and it
applies in sequence order: a delete and an allocation of the same node, from this process
or another, can never be applied in the wrong order (two appliers would need a sequence
per node to refuse a stale change). Applying a change twice is harmless: a node the index
holds is not added again (ids are global and never reused), removing an absent node does
nothing, and the filters and caches take the record as it is.

``applied`` means: every change up to it is applied. It advances only at the end of a
pass over ``changes_after`` (one pass reads pages until a short one), to the highest
sequence read: a node written again while the pass runs moves to a later page under its
newer sequence, so the pass's end, not a page's, is where every lower sequence is
accounted for. The store's sequences have no gaps (a rolled-back write gives its number
back), so the pass ends at or past the store's last sequence read before it.

Snapshots are tagged with ``applied`` read before the linker is waited for (durability's
``_quiesced_seq``): every change up to it was queued for the linker, and is linked once
the linker is idle; later changes that the index already holds are applied again by the
replay after the tag, harmlessly. No write is held back for it.

An own write waits for one pass (about 0.4 ms of a 1.4 ms allocation on a local
database): the price of a single applier, with no order between two to get wrong.

Readers ask ``catch_up`` first: the store's last sequence (one query), and, if the
follower is behind it, a wait until it has applied that far, at most ``timeout`` seconds
(then ``NotCaughtUpError``). So whatever any process acknowledged before a request is
found by it.

While the database cannot be reached (its primary lost, before a standby is promoted),
no write can be acknowledged, and with ``stale_reads`` readers are answered from what
this process has applied instead of failing: everything it acknowledged itself, though
perhaps not a write another process acknowledged just before the database went away.
Once the follower's last pass failed for that reason, readers do not ask the database
at all (each would wait out its connect timeout); they ask again once a pass succeeds.
Such a reader nudges the follower, which then tries again without waiting out its
backoff: once the database is back (a standby promoted), the next pass notices, and
reads catch up again, rather than up to ``MAX_RETRY_DELAY`` later, after other
processes have acknowledged writes that this one would not find.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from llmkg.engine.records import record_size
from llmkg.store.errors import StoreUnavailableError

if TYPE_CHECKING:
    from llmkg._core import HnswIndex, Linker
    from llmkg.engine.engine import AllocationEngine
    from llmkg.engine.filters import FactIndex
    from llmkg.engine.quantization import AdaptivePrecision
    from llmkg.engine.records import RecordCache
    from llmkg.store import Change, Store

log = logging.getLogger("llmkg.engine")

FAILING_AFTER = 3  # failed passes in a row after which readiness says so
MAX_RETRY_DELAY = 5.0  # seconds between passes at most while the store fails
RETRY_GAP = 0.05  # seconds between failed passes at least, however often nudged


class NotCaughtUpError(TimeoutError):
    """This process has not applied the store's changes up to a sequence in time: the
    answer could miss a write that another process acknowledged (or, after a write, that
    this process acknowledged: it is committed; retrying it is safe)."""


def follower_of(engine: AllocationEngine, applied: int) -> Follower | None:
    """The follower of an engine on a shared store (PostgreSQL), which has applied every
    change up to ``applied``; None on a store of its own (SQLite), which the engine alone
    writes to and whose writes it applies itself."""
    c = engine.config
    if c.store_backend != "postgresql":
        return None
    return Follower(
        engine.store,
        engine.index,
        engine.linker,
        engine.facts,
        engine.records,
        engine.precision,
        applied=applied,
        interval=c.follow_interval,
        stale_reads=c.stale_reads,
        on_change=engine._logged,
    )


class Follower:
    def __init__(
        self,
        store: Store,
        index: HnswIndex,
        linker: Linker,
        facts: FactIndex,
        records: RecordCache,
        precision: AdaptivePrecision,
        *,
        applied: int,
        interval: float,
        stale_reads: bool = False,
        on_change: Callable[[int], None] = lambda nbytes: None,
    ) -> None:
        self.store = store
        self.index = index
        self.linker = linker
        self.facts = facts
        self.records = records
        self.precision = precision
        self.interval = interval
        self.stale_reads = stale_reads
        self.on_change = on_change
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.applied = applied
        # The store's last sequence when the follower started: readiness waits for it.
        self.start_target = store.last_seq
        self.seen = max(applied, self.start_target)  # the store's last sequence, last read
        self.changes = 0  # changes applied (for the stats)
        self.failures = 0  # failed passes in a row
        self.last_error: str | None = None
        self.unreachable = False  # the last pass could not reach the database
        self.stale = 0  # reads answered without catching up (the database unreachable)
        self._thread = threading.Thread(target=self._run, name="llmkg-follower", daemon=True)
        self._thread.start()

    # ---- what readers and writers call -------------------------------------------------

    @property
    def lag(self) -> int:
        """Sequence numbers the follower is behind the store's last one (as last read)."""
        return max(0, self.seen - self.applied)

    def nudge(self) -> None:
        """Poll now rather than at the next interval."""
        self._wake.set()

    def wait_applied(self, seq: int, timeout: float) -> None:
        """Return once every change up to ``seq`` is applied; ``NotCaughtUpError`` after
        ``timeout`` seconds."""
        if self.applied >= seq:
            return
        self.nudge()
        with self._cond:
            if not self._cond.wait_for(lambda: self.applied >= seq or self._stop.is_set(), timeout):
                raise NotCaughtUpError(
                    f"this process has applied the store's changes up to sequence "
                    f"{self.applied}, not yet {seq}, within {timeout:g}s"
                    + (f" ({self.last_error})" if self.last_error else "")
                )
            if self.applied < seq:
                raise NotCaughtUpError("the follower has stopped")

    def catch_up(self, timeout: float) -> None:
        """Return once this process has applied every change the store had committed when
        called (read-your-writes across processes). With ``stale_reads``, while the
        database cannot be reached: at once, for an answer from this process's copy
        (counted in ``stale``)."""
        if self.stale_reads and self.unreachable:
            self._answer_stale()
            return
        try:
            seq = self.store.last_seq
        except StoreUnavailableError:
            if not self.stale_reads:
                raise
            self._answer_stale()
            return
        with self._cond:
            self.seen = max(self.seen, seq)
        self.wait_applied(seq, timeout)

    def _answer_stale(self) -> None:
        self.stale += 1
        self.nudge()  # the database may be back: find out now, not after the backoff

    def health(self) -> tuple[bool, str]:
        """Ready once the changes the store had at start are applied, while passes succeed."""
        detail = f"applied {self.applied}, lag {self.lag}"
        if self.applied < self.start_target:
            return False, f"catching up to sequence {self.start_target}: {detail}"
        if self.failures >= FAILING_AFTER:
            failing = f"{self.failures} passes failed in a row ({self.last_error}); {detail}"
            # Reads are still answered: out of rotation, every server would be, at once.
            if self.unreachable and self.stale_reads:
                return True, f"{failing}; answering reads from this copy"
            return False, failing
        return True, detail

    def stats(self) -> dict[str, object]:
        return {
            "applied_seq": self.applied,
            "lag": self.lag,
            "changes": self.changes,
            "failing": self.failures >= FAILING_AFTER,
            "stale_reads": self.stale,
            "last_error": self.last_error,
        }

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        with self._cond:
            self._cond.notify_all()

    # ---- the thread --------------------------------------------------------------------

    def _run(self) -> None:
        delay = self.interval
        while not self._stop.is_set():
            self._wake.wait(delay)
            # Cleared before the pass reads the store: a nudge from a write committed
            # before the clear is covered by this pass, one after it wakes the next.
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.poll()
            except Exception as e:
                self.unreachable = isinstance(e, StoreUnavailableError)
                self.failures += 1
                self.last_error = f"{type(e).__name__}: {e}"
                # Every failure of a flapping database would be a traceback: the first
                # one of a run, then a line.
                log.warning(
                    "following the store failed (%d in a row): %s",
                    self.failures,
                    self.last_error,
                    exc_info=self.failures == 1,
                )
                delay = min(MAX_RETRY_DELAY, self.interval * 2**self.failures)
                # A nudge ends the backoff early, but never starts passes back to back.
                gap = min(delay, RETRY_GAP)
                self._stop.wait(gap)
                delay -= gap
                continue
            if self.failures:
                log.info("following the store again after %d failed passes", self.failures)
            self.failures = 0
            self.last_error = None
            self.unreachable = False
            delay = self.interval

    def poll(self) -> int:
        """One pass: apply every change after ``applied``; returns how many were applied."""
        target = self.store.last_seq
        with self._cond:
            self.seen = max(self.seen, target)
        if target <= self.applied:
            return 0
        highest, count = self.applied, 0
        started = time.perf_counter()
        for change in self.store.changes_after(self.applied):
            self._apply(change)
            highest = max(highest, change.seq)
            count += 1
        with self._cond:
            self.applied = max(self.applied, highest)
            self.seen = max(self.seen, self.applied)
            self.changes += count
            self._cond.notify_all()
        log.debug(
            "applied %d changes up to sequence %d in %.3fs",
            count,
            highest,
            time.perf_counter() - started,
        )
        return count

    def _apply(self, change: Change) -> None:
        node_id, record = change.node_id, change.record
        if record is None:
            self.linker.discard(node_id)  # else linked after its removal
            self.index.remove([node_id])
            self.records.forget(node_id)
            self.facts.remove(node_id)
            self.on_change(64)
            return
        if node_id not in self.linker and node_id not in self.index:
            # Bounded like an allocation: every search scores the pending nodes.
            self.linker.wait_room()
            self.linker.add(
                node_id, record.embedding, self.precision.for_new(record.confidence, record.reads)
            )
        self.facts.add(node_id, record.subject, record.predicate, record.object, record.confidence)
        self.records.replace(record)
        self.on_change(record_size(record))
