"""Adaptive precision: how important a node is, which precision that buys it, and how
much memory the process may use.

Importance of a node = ``min(1, confidence + read_weight * log2(1 + reads))``: a node read
often climbs above its confidence (read_weight 0.1: 1 read +0.1, 3 reads +0.2, 1023 reads
+1.0). Importance picks a band by three descending edges; by default they are derived
from ``importance_threshold`` t as ``(t, t/2, t/4)``:

    importance >= t    -> "high"      (default precision: full)
    importance >= t/2  -> "medium"    (q8)
    importance >= t/4  -> "low"       (q4)
    otherwise          -> "very_low"  (binary)

``precision_bands`` sets the three edges directly; ``precision_levels`` maps bands to
precisions (``EngineConfig`` has checked both). With ``enable_adaptive`` off, importance is
ignored: every node gets ``default_precision``. Under memory pressure a new node is stored
one level cheaper, and the engine's background pass demotes the least important nodes until
memory falls below the threshold.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmkg._core import PRECISIONS
from llmkg.config.schema import Precision

if TYPE_CHECKING:
    from llmkg._core import HnswIndex
    from llmkg.engine.config import EngineConfig
    from llmkg.store import Store

log = logging.getLogger("llmkg.engine")

BANDS = ("high", "medium", "low", "very_low")
ORDER: tuple[Precision, ...] = PRECISIONS  # from most to least memory per node


# Reads gathered before they are counted (count_reads).
READS_BATCH = 256


@dataclass(frozen=True)
class PrecisionPolicy:
    """The rules above, with settings ``EngineConfig`` has validated."""

    importance_threshold: float
    precision_bands: tuple[float, float, float] | None
    precision_levels: dict[str, Precision]
    read_weight: float = 0.1

    @property
    def edges(self) -> tuple[float, float, float]:
        if self.precision_bands is not None:
            return self.precision_bands
        t = self.importance_threshold
        return (t, t / 2, t / 4)

    def importance(self, confidence: float, reads: int = 0) -> float:
        return min(1.0, confidence + self.read_weight * math.log2(1 + max(reads, 0)))

    def precision_for(self, importance: float, cheaper: int = 0) -> Precision:
        """The precision of ``importance``'s band, ``cheaper`` levels down (under pressure)."""
        band = next(
            (b for b, edge in zip(BANDS, self.edges, strict=False) if importance >= edge),
            "very_low",
        )
        level = ORDER.index(self.precision_levels[band])
        return ORDER[min(level + cheaper, len(ORDER) - 1)]


def resident_bytes() -> int | None:
    """Resident memory of this process (Linux ``/proc``), or None where unknown."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def memory_budget(configured: int | None) -> int:
    """The budget: configured, else the cgroup limit, else physical memory."""
    if configured:
        # A plain int: the config's ByteSize (an int subclass) does not encode to JSON.
        return int(configured)
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:  # "max" or a huge number: no limit
            return int(text)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class AdaptivePrecision:
    """The engine's precision decisions: for new nodes, and for existing ones as reads
    accumulate and memory pressure comes and goes."""

    def __init__(self, config: EngineConfig) -> None:
        self.enabled = config.enable_quantization
        self.adaptive = config.enable_adaptive
        self.default_precision = config.default_precision
        self.threshold = config.memory_pressure_threshold
        self.policy = PrecisionPolicy(
            importance_threshold=config.importance_threshold,
            precision_bands=config.precision_bands,
            precision_levels=dict(config.precision_levels),
        )
        self.budget = memory_budget(config.memory_budget)
        self.under_pressure = False
        self.total_reads: dict[int, int] = {}
        self._pending: Counter[int] = Counter()  # reads not yet counted in total_reads
        # The ids each read returned, not yet in _pending: appended without the lock (a
        # deque's append and popleft are atomic) and counted in batches, since a Counter
        # update under the lock on every search cost a tenth of the search.
        self._reads: deque[list[int]] = deque()
        self._unsaved: Counter[int] = Counter()  # counted, not yet written to the store
        self._touched: set[int] = set()  # confidence changed since the last pass
        self._lock = threading.Lock()

    def for_new(self, confidence: float, reads: int = 0) -> Precision:
        """The precision a node enters the index with."""
        if not self.enabled:
            return "full"
        importance = self.policy.importance(confidence, reads)
        return self._target(importance, cheaper=1 if self.under_pressure else 0)

    def _target(self, importance: float, cheaper: int = 0) -> Precision:
        if self.adaptive:
            return self.policy.precision_for(importance, cheaper)
        return ORDER[min(ORDER.index(self.default_precision) + cheaper, len(ORDER) - 1)]

    def count_reads(self, node_ids: list[int]) -> None:
        """Count one read of each of ``node_ids`` (the caller's list, kept: not changed
        after)."""
        self._reads.append(node_ids)
        if len(self._reads) >= READS_BATCH:
            with self._lock:
                self._fold_reads()

    def _fold_reads(self) -> None:
        """Count the reads appended so far into ``_pending``; the caller holds the lock."""
        for _ in range(len(self._reads)):
            self._pending.update(self._reads.popleft())

    def save_reads(self, store: Store) -> None:
        """Write the read counts gathered since the last save to the store. Called at
        checkpoints and on close, not every pass: under search load a pass has reads of
        thousands of nodes, whose updates would hold up the commits of allocations behind
        them; a crash loses at most a checkpoint interval of counts (warm-up hints)."""
        with self._lock:
            self._fold_reads()
            reads, self._pending = self._pending, Counter()
            for node_id, n in reads.items():
                self.total_reads[node_id] = self.total_reads.get(node_id, 0) + n
            self._unsaved.update(reads)
            unsaved, self._unsaved = self._unsaved, Counter()
        if unsaved:
            store.add_reads(dict(unsaved))

    def touch(self, node_id: int) -> None:
        """``node_id``'s confidence changed: the next pass looks at it again."""
        with self._lock:
            self._touched.add(node_id)

    def rebalance(
        self,
        index: HnswIndex,
        store: Store,
        confidences: Callable[[Iterable[int] | None], dict[int, float]],
    ) -> dict[str, int]:
        """Count the pending reads; then, under memory pressure, demote
        the least important tenth of the nodes one level, and otherwise move the nodes whose
        importance may have changed (read or touched since the last pass; all of them once
        pressure ends) to the precision it asks for. Returns how many moved each way.
        ``confidences(ids)`` gives the confidence of the live nodes among ``ids`` (None:
        of all of them)."""
        with self._lock:
            self._fold_reads()
            reads, self._pending = self._pending, Counter()
            touched, self._touched = self._touched, set()
            for node_id, n in reads.items():
                self.total_reads[node_id] = self.total_reads.get(node_id, 0) + n
            self._unsaved.update(reads)
        resident = resident_bytes()
        was_under_pressure = self.under_pressure
        self.under_pressure = resident is not None and resident > self.threshold * self.budget
        moved = {"demoted": 0, "promoted": 0}
        if not self.enabled:
            return moved
        every = self.under_pressure or was_under_pressure
        started = time.perf_counter()
        if every:  # a pass over every node: worth a line, as is what it moved
            log.info("precision pass over every node (memory pressure: %s)", self.under_pressure)
        known = confidences(None if every else {*reads, *touched})
        ids = list(known)
        importance = {i: self.policy.importance(known[i], self.total_reads.get(i, 0)) for i in ids}
        current = dict(zip(ids, index.precisions_of(np.array(ids, dtype=np.uint64)), strict=True))
        # (target level, raising?) -> node ids
        moves: dict[tuple[Precision, bool], list[int]] = defaultdict(list)
        if self.under_pressure:
            budget = max(1, len(importance) // 10)
            for node_id in sorted(importance, key=importance.__getitem__):
                level = current[node_id]
                if level is not None and level != ORDER[-1]:
                    moves[ORDER[ORDER.index(level) + 1], False].append(node_id)
                    budget -= 1
                    if budget == 0:
                        break
        else:
            for node_id, value in importance.items():
                level = current[node_id]
                target = self._target(value)
                if level is not None and target != level:
                    moves[target, ORDER.index(target) < ORDER.index(level)].append(node_id)
        for (target_level, raising), ids in moves.items():
            moved["promoted" if raising else "demoted"] += len(ids)
            live = [i for i in ids if i in index]
            try:
                if raising and not index.keep_full:
                    _raise_from_store(index, store, live, target_level)
                else:
                    index.set_precision(np.array(live, dtype=np.uint64), target_level)
            except ValueError:  # a node deleted meanwhile; the next pass redoes the rest
                continue
        if every or moves:
            log.info(
                "precision pass done: %d demoted, %d promoted in %.1f ms",
                moved["demoted"],
                moved["promoted"],
                (time.perf_counter() - started) * 1000,
            )
        return moved


def _raise_from_store(index: HnswIndex, store: Store, ids: list[int], level: Precision) -> None:
    """Raise nodes to ``level`` in place from the store's full vectors: an index that keeps
    codes only cannot restore from a code the detail it lost. The nodes keep their links."""
    records = store.get_many(ids)
    keys = [i for i in ids if i in records]
    if keys:
        vectors = np.stack([records[i].embedding for i in keys])
        index.set_precision(np.array(keys, dtype=np.uint64), level, vectors=vectors)
