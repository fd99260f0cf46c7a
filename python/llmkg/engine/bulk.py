"""Batched allocation, mixed into the engine: ``allocate_many`` places a batch as one
allocation after another would, at the cost of a few calls for all of it.

One allocation embeds its fact, searches its neighbours, commits and queues its node for
the linker: a batch of 1,000 was 1,000 of each, and 1,000 commits. Here a run of new facts
is embedded in one call, searched in one call into the core (the queries spread over
every core; the nodes of earlier runs are found while they wait for their link), placed
in one store transaction and queued for the linker together. A fact may take an earlier
fact of its own run as parent or neighbour, as it would had they been allocated one after
the other: the core ranks each fact's earlier facts in one call for the run.

A fact whose triple is stored already (or repeats one earlier in its run) ends the run and
is allocated alone, as ``allocate`` would (its node, its confidence raised)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from llmkg import tracing
from llmkg._core import MISSING_ID, embed_facts, nearest_earlier
from llmkg.engine.facts import Fact, PlacedFact, parse_batch
from llmkg.engine.results import AllocationResult, Neighbor

if TYPE_CHECKING:
    from llmkg._core import Linker
    from llmkg.engine.config import EngineConfig
    from llmkg.engine.filters import FactIndex
    from llmkg.engine.records import RecordCache
    from llmkg.engine.results import Node

# Facts searched and committed together; each is scored against the run's earlier facts.
RUN = 256


class BulkAllocation:
    config: EngineConfig
    linker: Linker
    facts: FactIndex
    records: RecordCache
    # The engine's own, used here.
    allocate: Callable[[Any], AllocationResult]
    _node_count: Callable[[], int]
    _place: Callable[[list[PlacedFact]], list[tuple[Node, bool]]]
    _precision_of: Callable[[int], str]

    def allocate_many(self, facts: Iterable[Any]) -> list[AllocationResult]:
        """Allocate each fact in order, as ``allocate`` one after the other would; results
        in input order. Every fact is validated before any is stored (``FactError`` names
        the index of the bad one)."""
        c = self.config
        parsed = parse_batch(list(facts), c.dim, c.max_text_length, c.max_batch)
        results: list[AllocationResult] = []
        run: list[Fact] = []
        in_run: set[tuple[str, str, str]] = set()
        for f in parsed:
            triple = (f.subject, f.predicate, f.object)
            if triple in in_run or self.facts.contains(*triple):
                results += self._allocate_run(run)
                run, in_run = [], set()
                results.append(self.allocate(f))
                continue
            run.append(f)
            in_run.add(triple)
            if len(run) == RUN:
                results += self._allocate_run(run)
                run, in_run = [], set()
        results += self._allocate_run(run)
        return results

    def _allocate_run(self, run: list[Fact]) -> list[AllocationResult]:
        """Facts whose triples no live node holds, none twice, placed as ``allocate``
        places each in turn."""
        if not run:
            return []
        started = time.perf_counter()
        c = self.config
        vectors = self._vectors(run)
        nodes = self._node_count()
        direct = not c.enable_hnsw or nodes < c.direct_threshold
        strategy = "direct" if direct else "hierarchical"
        k = c.neighbors or 1
        ids = np.full((len(run), k), MISSING_ID, dtype=np.uint64)
        scores = np.full((len(run), k), -np.inf, dtype=np.float32)
        if nodes:
            with tracing.span("candidates"):
                ids, scores = self.linker.search(vectors, k=k, exact=direct)
        # Each fact against the facts before it in the run, scored as the index scores.
        earlier, earlier_scores = nearest_earlier(vectors, k, c.metric)
        earlier_rows, earlier_score_rows = earlier.tolist(), earlier_scores.tolist()
        node_rows, score_rows = ids.tolist(), scores.tolist()
        choices: list[list[tuple[float, int | None, int | None]]] = []
        for i in range(len(run)):
            # (similarity, node id, or index of an earlier fact of the run)
            near: list[tuple[float, int | None, int | None]] = [
                (s, n, None)
                for n, s in zip(node_rows[i], score_rows[i], strict=True)
                if n != MISSING_ID
            ]
            near += [
                (s, None, j)
                for j, s in zip(earlier_rows[i], earlier_score_rows[i], strict=True)
                if j >= 0
            ]
            near.sort(key=lambda n: -n[0])
            choices.append(near[:k])
        # The parents' triples: the store names a parent by its triple.
        parents = [
            near[0][1]
            for near in choices
            if near and near[0][0] >= c.similarity_threshold and near[0][1] is not None
        ]
        records = self.records.get_many(parents)
        placed: list[PlacedFact] = []
        for f, near, vector in zip(run, choices, vectors, strict=True):
            parent = None
            if near and near[0][0] >= c.similarity_threshold:
                _, node_id, j = near[0]
                if node_id is None:
                    assert j is not None
                    e = run[j]
                    parent = (e.subject, e.predicate, e.object)
                elif node_id in records:  # else deleted meanwhile: a root
                    r = records[node_id]
                    parent = (r.subject, r.predicate, r.object)
            placed.append(PlacedFact(Fact(f.subject, f.predicate, f.object, f.confidence,
                                          vector), parent))  # fmt: skip
        with tracing.span("store.commit"):
            stored: list[tuple[Node, bool]] = self._place(placed)
        run_ids = [node.node_id for node, _ in stored]
        elapsed = (time.perf_counter() - started) * 1000
        results = []
        for f, (node, created), near in zip(run, stored, choices, strict=True):
            if not created:  # stored meanwhile by another writer: answered as allocate does
                results.append(self.allocate(f))
                continue
            neighbors = [
                Neighbor(node_id if node_id is not None else run_ids[j or 0], similarity)
                for similarity, node_id, j in near
            ]
            # The parent named by triple is the node chosen (or, had it been deleted
            # meanwhile, none: the fact is a root, which ``relink`` can change).
            chosen = Neighbor(node.parent, near[0][0]) if node.parent is not None else None
            results.append(
                AllocationResult(
                    node_id=node.node_id,
                    partition=c.partition,
                    parent=chosen,
                    neighbors=neighbors[: c.neighbors],
                    strategy=strategy,
                    precision=self._precision_of(node.node_id),
                    confidence=node.confidence,
                    created=created,
                    processing_time_ms=elapsed,
                )
            )
        return results

    def _vectors(self, run: list[Fact]) -> np.ndarray:
        """The run's vectors as one float32 matrix: the facts' own, the built-in embedder's
        (in one call) for the rest."""
        c = self.config
        missing = [f for f in run if f.embedding is None]
        with tracing.span("embed"):
            embedded: Iterator[np.ndarray] = iter(
                embed_facts([(f.subject, f.predicate, f.object) for f in missing], c.dim)
                if missing
                else []
            )
        rows = [f.embedding if f.embedding is not None else next(embedded) for f in run]
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)
