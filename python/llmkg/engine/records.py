"""Node records on their way from the store: the L1 and L2 cache tiers, prefetch of graph
neighbours, and warm-up of the most-read nodes.

A record (fact + full vector) never changes after it is stored, except its confidence;
the engine puts the new record on every confidence change and pops it on delete, so a
cached record is never stale. A reader that missed the cache and read the store while
such a change was applied (a follower's, from another process) could put the older record
back after it: ``replace`` and ``forget`` count changes, and a read that saw the count move
returns what it read without caching it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from llmkg._core import ShardedCache, TieredCache
from llmkg.store import NodeRecord, Store

if TYPE_CHECKING:
    from llmkg._core import HnswIndex
    from llmkg.engine.config import EngineConfig

log = logging.getLogger("llmkg.engine")

RECORD_OVERHEAD = 300  # bytes of a record beside its vector and texts (objects, headers, its Node)
PREFETCH_QUEUE = 256  # reads that may wait for their prefetch; beyond, prefetch is skipped


def record_size(r: NodeRecord) -> int:
    """The weight of a record against the tiers' ``max_memory``."""
    return r.embedding.nbytes + len(r.subject) + len(r.predicate) + len(r.object) + RECORD_OVERHEAD


class RecordCache:
    """Reads records through L1 -> L2 -> store (``enable_caching = False``: straight from
    the store)."""

    def __init__(self, config: EngineConfig, store: Store, index: HnswIndex) -> None:
        self.store = store
        self.index = index
        self.tiers: TieredCache | None = None
        self.prefetch_distance = config.prefetch_distance
        self._prefetcher: ThreadPoolExecutor | None = None
        self._queued = threading.BoundedSemaphore(PREFETCH_QUEUE)
        self.store_reads = 0
        # replace/forget calls: a record read or written while this moved is not cached (it
        # may be older than what the store holds now). Checked and moved under the lock, so
        # that a put either comes before a forget (which then drops it) or sees it.
        self._changes = 0
        self._changes_lock = threading.Lock()
        if not config.enable_caching:
            return
        l1 = ShardedCache(
            config.cache_l1_capacity,
            shards=config.cache_l1_shards,
            ttl=config.cache_l1_ttl,
            max_memory=config.cache_l1_max_memory,
            policy=config.eviction_policy,
        )
        l2 = ShardedCache(
            config.cache_l2_capacity,
            shards=config.cache_l2_shards,
            ttl=config.cache_l2_ttl,
            max_memory=config.cache_l2_max_memory,
            policy=config.eviction_policy,
        )
        self.tiers = TieredCache(l1, l2)
        if self.prefetch_distance > 0:
            self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="llmkg-prefetch")

    def get_many(self, ids: Iterable[int]) -> dict[int, NodeRecord]:
        ids = list(ids)
        if self.tiers is None:
            return self.store.get_many(ids)
        get = self.tiers.get  # a search reads ~100 records: one attribute lookup
        found: dict[int, NodeRecord] = {i: r for i in ids if (r := get(i)) is not None}
        missing = [i for i in ids if i not in found] if len(found) < len(ids) else []
        if missing:
            changes = self._changes
            fetched = self.store.get_many(missing)
            self.store_reads += len(fetched)
            with self._changes_lock:
                if changes == self._changes:
                    for node_id, record in fetched.items():
                        self.tiers.put(node_id, record, size=record_size(record))
            found.update(fetched)
            self._prefetch_around(fetched)
        return found

    def get(self, node_id: int) -> NodeRecord | None:
        return self.get_many([node_id]).get(node_id)

    @property
    def changes(self) -> int:
        """The count of replace/forget calls so far, for `put(record, since=...)`."""
        return self._changes

    def put(self, record: NodeRecord, since: int | None = None) -> None:
        """Cache ``record``; with ``since`` (the `changes` count from before the record was
        read or written), only if no replace or forget came in between."""
        if self.tiers is None:
            return
        with self._changes_lock:
            if since is None or since == self._changes:
                self.tiers.put(record.node_id, record, size=record_size(record))

    def replace(self, record: NodeRecord) -> None:
        """Put a record whose stored state changed (a new confidence)."""
        with self._changes_lock:
            self._changes += 1
            if self.tiers is not None:
                self.tiers.put(record.node_id, record, size=record_size(record))

    def forget(self, node_id: int) -> None:
        with self._changes_lock:
            self._changes += 1
            if self.tiers is not None:
                self.tiers.pop(node_id)

    def _prefetch_around(self, fetched: Iterable[int]) -> None:
        """Bring up to ``prefetch_distance`` graph neighbours of nodes just read from the
        store into L2, in the background (skipped when the prefetcher falls behind)."""
        if self._prefetcher is None:
            return
        for node_id in fetched:
            if not self._queued.acquire(blocking=False):
                return
            self._prefetcher.submit(self._prefetch, node_id)

    def _prefetch(self, node_id: int) -> None:
        try:
            assert self.tiers is not None
            try:
                near = self.index.neighbors(node_id)[: self.prefetch_distance]
            except KeyError:  # deleted meanwhile, or not linked into the index yet
                return
            wanted = [int(n) for n in near if int(n) not in self.tiers]
            changes = self._changes
            fetched = self.store.get_many(wanted)
            with self._changes_lock:
                if changes != self._changes:
                    return
                for n, record in fetched.items():
                    self.tiers.l2.put(n, record, size=record_size(record))
        except Exception:
            log.exception("prefetch around node %d failed", node_id)
        finally:
            self._queued.release()

    def warm_up(self, count: int) -> int:
        """Load the ``count`` most-read nodes; returns how many were loaded."""
        if self.tiers is None or count <= 0:
            return 0
        records = self.store.get_many(self.store.most_read(count))
        for node_id, record in records.items():
            self.tiers.put(node_id, record, size=record_size(record))
        return len(records)

    def stats(self) -> dict[str, float | int | None]:
        if self.tiers is None:
            return {
                "enabled": False,
                "l1_hit_rate": None,
                "l2_hit_rate": None,
                "store_reads": self.store_reads,
            }
        tiers = self.tiers.stats()
        return {
            "enabled": True,
            "l1_hit_rate": tiers["l1"]["hit_rate"],
            "l2_hit_rate": tiers["l2"]["hit_rate"],
            "l1_entries": tiers["l1"]["entries"],
            "l2_entries": tiers["l2"]["entries"],
            "store_reads": self.store_reads,
        }

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.shutdown(wait=True)
