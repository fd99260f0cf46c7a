"""AllocationEngine: the index, the store and the embedder joined as the architecture's
"flow of one allocation" describes.

Concurrency: any number of threads may allocate, search and delete at once. A write
(store commit, then index update) runs inside the *write path*; a checkpoint drains the
write path for an instant to read a sequence number that every index update up to it has
reached, so a snapshot tagged with it never misses a write (replay is idempotent, so
writes after the tag that are already in the snapshot do no harm).

On a shared store (PostgreSQL) other processes write too: the follower (follow.py) applies
every change, this engine's own included, and reads catch up with the store first.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, overload

import numpy as np

from llmkg import tracing
from llmkg._core import MISSING_ID, HnswIndex, Linker, embed_text, score_rows
from llmkg.engine.allocation import Allocation
from llmkg.engine.bulk import BulkAllocation
from llmkg.engine.checkpointing import CheckpointTracker
from llmkg.engine.config import EngineConfig
from llmkg.engine.durability import Durability
from llmkg.engine.exclusion import WriteGate, lock_directory
from llmkg.engine.facts import check_search, embedding_field, text_field
from llmkg.engine.filters import FactFilter, FactIndex, search_filter
from llmkg.engine.follow import Follower, follower_of
from llmkg.engine.graph import Graph
from llmkg.engine.placing import Placing
from llmkg.engine.quantization import AdaptivePrecision, resident_bytes
from llmkg.engine.records import RecordCache
from llmkg.engine.results import ExpandedSearch, Node, SearchHit
from llmkg.engine.snapshots import load_newest, reconcile, replay
from llmkg.progress import Progress, ProgressFactory
from llmkg.store import NodeRecord, Store, StoreUnavailableError, open_store

log = logging.getLogger("llmkg.engine")

# The index's full rows with quantization on (scratch space: rewritten at each start).
VECTOR_FILE = "index-vectors.f32"
# Nodes whose full rows are read back from the store at a time (_restore_full_rows).
RESTORE_BATCH = 10_000


class AllocationEngine(BulkAllocation, Allocation, Durability, Graph, Placing):
    """Places facts in the graph and finds them again; durable through its store."""

    def __init__(
        self, config: EngineConfig | None = None, progress: ProgressFactory | None = None
    ) -> None:
        """``progress``: where a long start-up replay or rebuild reports how far it is (by
        default, log lines)."""
        self.config = config or EngineConfig()
        self._progress = progress
        c = self.config
        started = time.perf_counter()
        c.data_directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(c.data_directory)
        # Seconds of each index search, for the server's metrics.
        self.on_index_search: Callable[[float], None] | None = None
        try:
            self._open(started)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self, started: float) -> None:
        """Open the store, load the index (snapshot + replay, or rebuild), warm the caches
        and start the background checkpointer."""
        c = self.config
        self.snapshot_dir = c.data_directory / "snapshots"
        self.store: Store = open_store(c)
        self._gate = WriteGate()
        self._checkpoint_lock = threading.Lock()
        self.facts = FactIndex()
        self.precision = AdaptivePrecision(c)
        # Read before the replay, which then reads every change up to it at least.
        store_seq = self.store.last_seq
        loaded = load_newest(
            self.snapshot_dir,
            c.dim,
            c.metric,
            store_id=self.store.store_id,
            store_seq=store_seq,
        )
        if loaded:
            self.index, self.snapshot_seq = loaded
            # Search and insert settings are not part of the graph: the config's win.
            self.index.ef_search = c.ef_search
            self.index.max_level = c.max_level
            if not self.index.keep_full:
                self._restore_full_rows()
            source = "snapshot"
        else:
            self.index = self._new_index()
            self.snapshot_seq = 0
            source = "rebuild"
        self._map_full_rows()
        replayed = replay(
            self.index, self.store, self.precision, self.snapshot_seq, self._replay_progress()
        )
        for node_id, s, p, o, confidence, reads in self.store.iter_live():
            self.facts.add(node_id, s, p, o, confidence)
            self.precision.total_reads[node_id] = reads
        if loaded and not reconcile(
            self.index, self.store, self.precision, self.facts.confidences(), store_seq
        ):
            self.index = self._new_index()
            self.snapshot_seq = 0
            self._map_full_rows()
            replayed = replay(self.index, self.store, self.precision, 0, self._replay_progress())
            source = "rebuild"
        self.records = RecordCache(c, self.store, self.index)
        # Links each committed node into the index off the request's path; searches
        # through it find the nodes still waiting (scored exactly) as well.
        self.linker = Linker(self.index, timeout=c.link_timeout, max_attempts=c.link_attempts)
        warmed = self.records.warm_up(c.cache_warmup_count) if c.cache_warmup_on_startup else 0
        self.startup = {
            "source": source,
            "warmed_up": warmed,
            "snapshot_seq": self.snapshot_seq,
            "replayed": replayed,
            "seconds": time.perf_counter() - started,
        }
        log.info(
            "engine ready: %d nodes from %s (seq %d) + %d replayed in %.3fs",
            len(self.index),
            source,
            self.snapshot_seq,
            replayed,
            self.startup["seconds"],
        )
        self._last_checkpoint = time.monotonic()
        self.checkpoints = CheckpointTracker()
        self._log_lock = threading.Lock()
        self._log_bytes = 0  # written to the store since the last snapshot
        # A shared store: other processes write to it too (follow.py). A store of its own
        # (SQLite) is written by this engine alone, which applies its writes itself. Last:
        # the follower's thread uses what is set up above (the log counter included).
        self.follower: Follower | None = follower_of(self, store_seq)
        self._stop = threading.Event()
        self._background = threading.Thread(
            target=self._maintain, name="llmkg-checkpointer", daemon=True
        )
        self._background.start()

    def _replay_progress(self) -> Progress | None:
        if self._progress is None:
            return None  # replay's own: log lines
        what = "replaying the store" if self.snapshot_seq else "rebuilding the index"
        return self._progress(what, None, "changes")

    def _new_index(self) -> HnswIndex:
        c = self.config
        # Every full row is kept: a search traverses on a quantized node's code and
        # rescores its candidates with full rows, in the core (`_map_full_rows`).
        return HnswIndex(
            c.dim,
            metric=c.metric,
            m=c.m,
            ef_construction=c.ef_construction,
            ef_search=c.ef_search,
            keep_full=True,
            max_level=c.max_level,
        )

    def _restore_full_rows(self) -> None:
        """Give an index loaded from a snapshot of codes only (written before the index kept
        every full row) the full rows of its quantized nodes, from the store."""
        ids = self.index.ids()
        precisions = self.index.precisions_of(ids)
        coded = [int(i) for i, p in zip(ids, precisions, strict=True) if p not in (None, "full")]
        for start in range(0, len(coded), RESTORE_BATCH):
            records = self.store.get_many(coded[start : start + RESTORE_BATCH])
            if records:
                found = list(records)
                vectors = np.stack([records[i].embedding for i in found])
                self.index.restore_full_rows(np.array(found, dtype=np.uint64), vectors)
        log.info("full rows of %d quantized nodes read back from the store", len(coded))

    def _map_full_rows(self) -> None:
        """With quantization, the index keeps its full rows in a mapped file rather than on
        the heap: resident memory is the codes and the links, and the kernel pages the
        rows that rescoring reads in and out. Where the file cannot be mapped, they stay
        on the heap."""
        if not self.config.enable_quantization:
            return
        path = self.config.data_directory / VECTOR_FILE
        try:
            self.index.map_full_rows(path)
        except OSError as e:
            log.warning("full rows kept in memory: %s cannot be mapped (%s)", path, e)

    # ---- allocation --------------------------------------------------------------------

    def _nearest(
        self,
        query: np.ndarray,
        k: int,
        ef: int | None = None,
        allowed: FactFilter | None = None,
        exact: bool = False,
        wait: bool = True,
    ) -> list[tuple[NodeRecord, float]]:
        """The ``k`` nodes closest to ``query`` with their exact scores, best first.

        One call into the core finds them, the nodes not yet linked included, and scores
        them exactly: the index traverses on the codes of quantized nodes and rescores its
        candidates with the full rows it keeps. ``wait=False``: ``IndexBusyError`` rather
        than a wait for a writer of the index."""
        started = time.perf_counter()
        found_ids, found_scores = self.linker.search(
            query, k=k, ef=ef, filter=allowed, exact=exact, wait=wait
        )
        if self.on_index_search is not None:
            self.on_index_search(time.perf_counter() - started)
        hit = found_ids != MISSING_ID
        ids = found_ids[hit].tolist()
        records = self.records.get_many(ids)
        scores = found_scores[hit].tolist()
        return [(records[i], s) for i, s in zip(ids, scores, strict=True) if i in records]

    def _node_count(self) -> int:
        """Live nodes, linked or pending: the fact index holds every one (the index and
        the linker's queue both hold a node for a moment after its link)."""
        return len(self.facts)

    def _precision_of(self, node_id: int) -> str:
        pending = self.linker.precision_of(node_id)
        if pending is not None:
            return pending
        return self.index.precision_of(node_id) if node_id in self.index else "full"

    def sync_index(self) -> None:
        """Return once every node allocated so far is linked into the index (searches find
        a node either way; this is for code that reads the index itself)."""
        self.linker.wait_idle()

    def _scores(self, query: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        # In the core, with the GIL kept: numpy's matrix products release it on arrays
        # this size, and winning it back costs more under load than the products.
        return score_rows(query, vectors, self.config.metric)

    # ---- reads -------------------------------------------------------------------------

    @overload
    def search(
        self,
        embedding: Any = None,
        text: str | None = None,
        k: int = 10,
        ef: int | None = None,
        filter: Mapping[str, Any] | None = None,
        wait: bool = True,
        expand: None = None,
    ) -> list[SearchHit]: ...

    @overload
    def search(
        self,
        embedding: Any = None,
        text: str | None = None,
        k: int = 10,
        ef: int | None = None,
        filter: Mapping[str, Any] | None = None,
        wait: bool = True,
        *,
        expand: Mapping[str, Any],
    ) -> ExpandedSearch: ...

    def search(
        self,
        embedding: Any = None,
        text: str | None = None,
        k: int = 10,
        ef: int | None = None,
        filter: Mapping[str, Any] | None = None,
        wait: bool = True,
        expand: Mapping[str, Any] | None = None,
    ) -> list[SearchHit] | ExpandedSearch:
        """Nodes closest to ``embedding`` (or to ``text``, embedded), best first, scored at
        full precision. ``filter``: exact ``subject``/``predicate``/``object`` and
        ``min_confidence``. ``wait=False`` (a caller on an event loop): raise
        ``IndexBusyError``, having changed nothing, instead of waiting for a writer of the
        index (an insert's slot allocation, the end of a compaction, a precision change).

        ``expand`` (``{"hops": 1..2, "max_facts": 1..200, "predicates": [...]}``, each
        optional): an ``ExpandedSearch``, the hits and the facts connected to their
        subjects and objects (``Graph._expand``), read from the store."""
        c = self.config
        check_search(embedding, text, k, ef, c.max_k)
        expansion = None if expand is None else self._expansion(expand)
        if text is not None:
            text = text_field(text, "query.text", c.max_text_length)
            with tracing.span("embed"):
                query = embed_text(text, c.dim)
        else:
            query = embedding_field(embedding, "query.embedding", c.dim)
        self._catch_up()
        allowed = search_filter(self.facts, filter, c.max_text_length) if filter else None
        hits: list[SearchHit] = []
        if self._node_count() != 0:
            with tracing.span("candidates"):
                ranked = self._nearest(
                    query, k, ef=ef, allowed=allowed, exact=not c.enable_hnsw, wait=wait
                )
            hits = [SearchHit(r.node_id, score, r.node) for r, score in ranked]
            self.precision.count_reads([h.node_id for h in hits])
        if expansion is None:
            return hits
        with tracing.span("expand"):
            return ExpandedSearch(hits, *self._expand(hits, *expansion))

    def _catch_up(self) -> None:
        if self.follower is not None:
            with tracing.span("follower.catch_up"):
                self.follower.catch_up(self.config.catch_up_timeout)

    def get(self, node_id: int) -> Node | None:
        self._catch_up()
        record = self.records.get(node_id)
        # A reader racing a delete may have cached the record again: the index (or the
        # linker's queue), updated inside the write path, is what says the node exists.
        # The queue first: a node leaves it only once the index has it.
        if record is None or not (node_id in self.linker or node_id in self.index):
            return None
        self.precision.count_reads([node_id])
        return record.node

    def delete(self, node_id: int) -> bool:
        """Delete a node; False if it is not there."""
        record = self.records.get(node_id)
        if record is None:
            return False
        with self._gate.write():
            moved = self.store.detach(node_id)  # its children take its parent
            deleted = moved is not None
            if deleted and self.follower is not None:
                # At or past the delete's sequence (the highest this store committed); the
                # follower applies the moved children's new parent too.
                self.follower.wait_applied(self.store.committed_seq, self.config.catch_up_timeout)
                return True
            if deleted:
                self.linker.discard(node_id)  # else linked after its removal
                self.index.remove([node_id])
        for child in [node_id, *(moved or ())]:  # cached children name the old parent
            self.records.forget(child)
        if deleted:
            self._logged(64)
            self.facts.remove(node_id)
        return deleted

    def stats(self) -> dict[str, Any]:
        # Never waits on the linker (a scrape must answer while it is behind or failing):
        # the index's figures leave out the pending nodes, which "inserts" counts.
        index = self.index.stats()
        linker_ok, linker_detail = self.linker.health()
        nodes = self._node_count()
        return {
            "nodes": nodes,
            "partition": self.config.partition,
            "strategy": "direct"
            if not self.config.enable_hnsw or nodes < self.config.direct_threshold
            else "hierarchical",
            "index": {
                k: index[k]
                for k in ("len", "deleted", "memory_bytes", "top_level", "precisions", "kernels")
            },
            "store": {
                "last_seq": self.store.committed_seq,
                "commits": self.store.commits,
                "writes": self.store.writes,
                "wal_bytes": self.store.wal_bytes(),
                "failed_writes": self.store.failed_writes,
                "last_error": self.store.last_error,
            },
            "inserts": {
                "nodes": self.linker.inserted,
                "batches": self.linker.batches,
                "urgent_batches": self.linker.urgent_batches,
                "pending": len(self.linker),
                "failing": not linker_ok,
                "failed_links": self.linker.failed_links,
                "last_error": self.linker.last_error,
                "detail": linker_detail,
            },
            "snapshot_seq": self.snapshot_seq,
            "follow": None if self.follower is None else self.follower.stats(),
            "startup": dict(self.startup),
            "cache": self.records.stats(),
            "memory": {
                "resident_bytes": resident_bytes(),
                "budget_bytes": self.precision.budget,
                "pressure_threshold": self.config.memory_pressure_threshold,
                "under_pressure": self.precision.under_pressure,
            },
        }

    def close(self) -> None:
        """Stop background work, write a final snapshot if anything changed, close the store."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._background.join()
        # Writes under way finish; later ones are refused before they store anything, so
        # that none is stored after the linker stopped (a row the index would never hold).
        self._gate.close()
        if self.follower is not None:
            self.follower.close()
        self.records.close()
        self.linker.close()
        try:
            self.precision.save_reads(self.store)
        except StoreUnavailableError as e:
            # Read counts are warm-up hints: losing them must not keep the store open.
            log.warning("read counts not saved at close: %s", e)
        try:
            if self._applied_seq() > self.snapshot_seq:
                self.checkpoint()
        except Exception:
            # Nothing acknowledged is lost: it is in the store, and the next start replays
            # what the last snapshot lacks.
            log.exception("final checkpoint failed; the next start replays the store")
        finally:
            self.store.close()
            os.close(self._lock_fd)

    def __enter__(self) -> AllocationEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
