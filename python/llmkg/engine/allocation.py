"""Allocation, mixed into the engine: a fact's candidates, its parent, its commit and its
queueing for the linker (the architecture's "flow of one allocation"); a known triple's
confidence raised in place; a stored row the engine missed adopted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from llmkg import tracing
from llmkg._core import embed_fact
from llmkg.engine.facts import Fact, parse_fact
from llmkg.engine.records import record_size
from llmkg.engine.results import AllocationResult, Neighbor

if TYPE_CHECKING:
    from llmkg._core import HnswIndex, Linker
    from llmkg.engine.config import EngineConfig
    from llmkg.engine.exclusion import WriteGate
    from llmkg.engine.filters import FactIndex
    from llmkg.engine.follow import Follower
    from llmkg.engine.quantization import AdaptivePrecision
    from llmkg.engine.records import RecordCache
    from llmkg.store import NodeRecord, Store

log = logging.getLogger("llmkg.engine")

# Tries of one allocation whose stored node is deleted under it each time (a race that
# needs a delete of the same triple between every find and every update).
ALLOCATE_ATTEMPTS = 3


class Allocation:
    config: EngineConfig
    store: Store
    index: HnswIndex
    linker: Linker
    precision: AdaptivePrecision
    facts: FactIndex
    records: RecordCache
    follower: Follower | None
    _gate: WriteGate
    _log_lock: threading.Lock
    # The engine's own, used here.
    _nearest: Callable[..., list[tuple[NodeRecord, float]]]
    _node_count: Callable[[], int]
    _precision_of: Callable[[int], str]
    _scores: Callable[[np.ndarray, np.ndarray], np.ndarray]
    _logged: Callable[[int], None]

    def _candidates(self, embedding: np.ndarray, k: int) -> tuple[str, list[Neighbor]]:
        c = self.config
        nodes = self._node_count()
        direct = not c.enable_hnsw or nodes < c.direct_threshold
        strategy = "direct" if direct else "hierarchical"
        if k == 0 or nodes == 0:
            return strategy, []
        with tracing.span("candidates"):
            ranked = self._nearest(embedding, k, exact=direct)
        return strategy, [Neighbor(r.node_id, score) for r, score in ranked]

    def allocate(self, fact: Any) -> AllocationResult:
        """Place one fact (a mapping with subject, predicate, object, confidence and an
        optional embedding). A triple already stored keeps its node (``created=False``);
        its confidence becomes the larger of the stored and the new one, so that a retried
        allocation changes nothing."""
        started = time.perf_counter()
        c = self.config
        f = parse_fact(fact, c.dim, c.max_text_length)
        for _ in range(ALLOCATE_ATTEMPTS):
            result = self._allocate(f, started)
            if result is not None:
                return result
        raise RuntimeError(
            f"the triple of {f.subject!r} was deleted and stored again {ALLOCATE_ATTEMPTS} "
            "times while it was being allocated; try again"
        )

    def _allocate(self, f: Fact, started: float) -> AllocationResult | None:
        """One attempt of `allocate`; None when the stored node it found was deleted before
        its confidence could be raised (the next attempt stores the fact anew)."""
        # Before any store read or write: a delete that moves this node under another
        # parent meanwhile forgets its cached record, and the puts below then cache nothing.
        since = self.records.changes
        c = self.config
        # The fact index knows every stored triple but those being allocated right now,
        # so a new fact (the usual case) skips the store read; one stored meanwhile is
        # caught by the store's own check in insert (created=False).
        known = self.facts.contains(f.subject, f.predicate, f.object)
        record = self.store.find(f.subject, f.predicate, f.object) if known else None
        if record is None:
            embedding = f.embedding
            if embedding is None:
                with tracing.span("embed"):
                    embedding = embed_fact(f.subject, f.predicate, f.object, c.dim)
            strategy, neighbors = self._candidates(embedding, c.neighbors or 1)
            best = neighbors[0] if neighbors else None
            parent = (
                best if best is not None and best.similarity >= c.similarity_threshold else None
            )
            # Before the commit: a linker too far behind refuses the fact, not half of it.
            self.linker.wait_room()
            with self._gate.write():
                with tracing.span("store.commit"):
                    record, created = self.store.insert(
                        f.subject,
                        f.predicate,
                        f.object,
                        f.confidence,
                        embedding,
                        parent.node_id if parent else None,
                    )
                precision = self.precision.for_new(f.confidence)
                if created and self.follower is not None:
                    with tracing.span("follower.wait"):
                        self.follower.wait_applied(record.seq, c.catch_up_timeout)
                elif created:
                    self.linker.add(record.node_id, embedding, precision)
            if created:
                if self.follower is None:
                    self._logged(record_size(record))
                    self.facts.add(record.node_id, f.subject, f.predicate, f.object, f.confidence)
                    # Written through: the next search to meet the new node (often on the
                    # event loop) would otherwise read it back from SQLite, which releases
                    # the GIL.
                    self.records.put(record, since=since)
                return AllocationResult(
                    node_id=record.node_id,
                    partition=c.partition,
                    parent=parent,
                    neighbors=neighbors[: c.neighbors],
                    strategy=strategy,
                    precision=precision,
                    confidence=record.confidence,
                    created=True,
                    processing_time_ms=(time.perf_counter() - started) * 1000,
                )
        # The triple exists (found, or stored by a concurrent allocation meanwhile).
        # (On a shared store the follower applies every committed row, late ones included.)
        if self.follower is None and not self.facts.confidences([record.node_id]):
            self._adopt(record)
        if f.confidence > record.confidence:
            # Raised in place, never stored anew: a node deleted since it was found must not
            # come back as a row that nothing indexes.
            raised = self.store.raise_confidence(record.node_id, f.confidence)
            if raised is None:
                return None
            record = raised
        if self.follower is not None:
            # Applied by the follower, in sequence order with every other change of the node.
            with tracing.span("follower.wait"):
                self.follower.wait_applied(record.seq, c.catch_up_timeout)
        else:
            # Fresh from the store (a concurrent allocation may have raised the confidence).
            self.records.put(record, since=since)
            self.facts.set_confidence(record.node_id, record.confidence)
        self.precision.touch(record.node_id)
        strategy, neighbors = self._candidates(record.embedding, c.neighbors + 1)
        neighbors = [n for n in neighbors if n.node_id != record.node_id][: c.neighbors]
        parent = None
        if record.parent is not None:
            parent_record = self.store.get(record.parent)
            if parent_record is not None:
                similarity = self._similarity(record.embedding, parent_record.embedding)
                parent = Neighbor(record.parent, similarity)
        return AllocationResult(
            node_id=record.node_id,
            partition=c.partition,
            parent=parent,
            neighbors=neighbors,
            strategy=strategy,
            precision=self._precision_of(record.node_id),
            confidence=record.confidence,
            created=False,
            processing_time_ms=(time.perf_counter() - started) * 1000,
        )

    def _adopt(self, record: NodeRecord) -> None:
        """Index a stored node that the engine does not know: one whose allocation stopped
        waiting for its commit (``write_timeout``: the client got a 503) while the commit
        went on. Run with writes held back, so that no delete slips between the check and
        the link; a node that a concurrent allocation is storing right now is found in the
        linker's queue by then, and left alone."""

        def adopt() -> bool:
            node_id = record.node_id
            if node_id in self.linker or node_id in self.index:
                return False
            if self.store.get(node_id) is None:
                return False
            precision = self.precision.for_new(record.confidence, record.reads)
            self.linker.add(node_id, record.embedding, precision)
            self.facts.add(
                node_id, record.subject, record.predicate, record.object, record.confidence
            )
            return True

        if self._gate.drained(adopt):
            log.warning("node %d was stored without being indexed; indexed now", record.node_id)

    def _similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(self._scores(a, b[None, :])[0])
