"""The router: how any pod answers allocate, search, get and delete for a graph split into
partitions, each indexed by the pods that host it (ARCHITECTURE.md, "Scale-out").

- **allocate**: the fact is embedded here; every partition is asked for its nearest
  nodes (``Candidates``) and the parent is the best of all of them, at or above
  ``similarity_threshold``. If a partition does not answer within the deadline, the
  fact is not placed on partial candidates: ``PartitionsUnavailableError`` (503). Then
  it is committed in PostgreSQL under its home partition (a hash of its triple, so that
  every pod sends a triple to the same partition, where it is unique), and the home
  partition's replicas are nudged to apply it now rather than at their next poll.
- **search**: every partition's top k (``Search`` of one replica each, in parallel),
  merged by their exact scores; a partition missing is 503 unless ``allow_partial``.
- **get** / **delete**: the database says which partition holds the node; a get is
  answered by one of its replicas, a delete is committed in the database (its children,
  wherever they live, take its parent) and every partition is nudged.

Reads stay read-your-writes: the replica that answers catches up with its partition of
the database first (``AllocationEngine._catch_up``). The calls' deadlines, retries,
replica choice and circuit breakers are ``PeerPool``'s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from llmkg._core import embed_fact, embed_text, score_rows
from llmkg.engine.facts import (
    Fact,
    check_search,
    embedding_field,
    parse_batch,
    parse_fact,
    text_field,
)
from llmkg.engine.results import AllocationResult, Neighbor, Node, SearchHit
from llmkg.store.placement import home_partition

if TYPE_CHECKING:
    from llmkg.engine.config import EngineConfig
    from llmkg.partition.peers import PeerPool
    from llmkg.partition.types import PartitionCallError
    from llmkg.store.postgres import PostgresStore

T = TypeVar("T")
Run = Callable[..., Awaitable[Any]]


class PartitionsUnavailableError(RuntimeError):
    """Partitions that did not answer in time (or whose replicas all failed): the answer
    would have been partial."""

    def __init__(self, errors: Mapping[int, PartitionCallError]) -> None:
        self.partitions = sorted(errors)
        detail = "; ".join(str(errors[p]) for p in self.partitions[:3])
        super().__init__(f"partitions {self.partitions} did not answer: {detail}")


@dataclass(frozen=True)
class RoutedSearch:
    hits: list[SearchHit]
    total: int  # partitions
    answered: int  # partitions that answered


def merge_hits(answers: Sequence[Sequence[SearchHit]], k: int) -> list[SearchHit]:
    """The best ``k`` of every partition's hits, by exact score (ties: smaller id)."""
    hits = [h for answer in answers for h in answer]
    hits.sort(key=lambda h: (-h.score, h.node_id))
    return hits[:k]


def merge_candidates(answers: Sequence[Sequence[Neighbor]], k: int) -> list[Neighbor]:
    found: dict[int, Neighbor] = {}
    for answer in answers:
        for n in answer:
            if n.node_id not in found or n.similarity > found[n.node_id].similarity:
                found[n.node_id] = n
    return sorted(found.values(), key=lambda n: (-n.similarity, n.node_id))[:k]


class Router:
    """``stores``: a store of every partition (the writes go through them); ``whole``: one
    whose reads cover every partition (where a node lives, and its record); ``peers``:
    the pool that calls the partitions' replicas (this pod's own included); ``run``: runs a
    blocking call off the event loop; ``precision_for_new``: the precision a new node
    enters its partition's index with (the pods share the policy)."""

    def __init__(
        self,
        config: EngineConfig,
        stores: Mapping[int, PostgresStore],
        whole: PostgresStore,
        peers: PeerPool,
        run: Run,
        precision_for_new: Callable[[float], str],
        timeout: float | None = None,
    ) -> None:
        self.config = config
        self.count = config.partition_count
        self.stores = stores
        self.whole = whole
        self.peers = peers
        self.run = run
        self.precision_for_new = precision_for_new
        self.timeout = timeout
        self._nudges: set[asyncio.Task[Any]] = set()

    # ---- writes ------------------------------------------------------------------------

    async def allocate(self, raw: Any) -> AllocationResult:
        started = time.perf_counter()
        c = self.config
        return await self._place(parse_fact(raw, c.dim, c.max_text_length, "fact"), started)

    async def _place(self, f: Fact, started: float) -> AllocationResult:
        c = self.config
        embedding = (
            f.embedding
            if f.embedding is not None
            else embed_fact(f.subject, f.predicate, f.object, c.dim)
        )
        home = home_partition(f.subject, f.predicate, f.object, self.count)
        fan = await self.peers.fan_out_candidates(
            embedding, (c.neighbors or 1) + 1, timeout=self.timeout
        )
        if not fan.complete:
            raise PartitionsUnavailableError(fan.errors)
        neighbors = merge_candidates(list(fan.results.values()), (c.neighbors or 1) + 1)
        best = neighbors[0] if neighbors else None
        parent = best if best is not None and best.similarity >= c.similarity_threshold else None
        store = self.stores[home]
        record, created = await self.run(
            store.insert,
            f.subject,
            f.predicate,
            f.object,
            f.confidence,
            embedding,
            parent.node_id if parent else None,
        )
        self._nudge(home, record.seq)
        neighbors = [n for n in neighbors if n.node_id != record.node_id][: c.neighbors]
        if not created or (parent is not None and record.parent != parent.node_id):
            # Stored before (or its parent deleted meanwhile): the parent it has.
            parent = next((n for n in neighbors if n.node_id == record.parent), None)
            if parent is None and record.parent is not None:
                parent = Neighbor(record.parent, await self._similarity(record, record.parent))
        return AllocationResult(
            node_id=record.node_id,
            partition=home,
            parent=parent,
            neighbors=neighbors,
            strategy="partitioned",
            precision=self.precision_for_new(record.confidence),
            confidence=record.confidence,
            created=created,
            processing_time_ms=(time.perf_counter() - started) * 1000,
        )

    async def _similarity(self, record: Any, other: int) -> float:
        found = await self.run(self.whole.get, other)
        if found is None:
            return 0.0
        # The engine's similarity (its candidates' and parents' measure).
        return float(score_rows(record.embedding, found.embedding[None, :], self.config.metric)[0])

    async def allocate_many(self, facts: Iterable[Any]) -> list[AllocationResult]:
        """In order, each placed among the ones before it; every fact is checked before
        any is stored."""
        c = self.config
        parsed = parse_batch(list(facts), c.dim, c.max_text_length, c.max_batch)
        return [await self._place(f, time.perf_counter()) for f in parsed]

    async def delete(self, node_id: int) -> bool:
        partition = await self.run(self.whole.partition_of, node_id)
        if partition is None:
            return False
        moved = await self.run(self.stores[partition].detach, node_id)
        if moved is None:
            return False
        # The children may live in any partition: every partition looks now.
        for p in range(self.count):
            self._nudge(p, 0)
        return True

    def _nudge(self, partition: int, seq: int) -> None:
        # Not waited for: a replica that misses it applies the change at its next poll.
        task = asyncio.ensure_future(self.peers.nudge(partition, seq, timeout=self.timeout))
        self._nudges.add(task)
        task.add_done_callback(self._nudges.discard)

    # ---- reads -------------------------------------------------------------------------

    async def search(
        self,
        embedding: Any = None,
        text: str | None = None,
        k: int = 10,
        ef: int | None = None,
        filter: Mapping[str, Any] | None = None,
        allow_partial: bool = False,
    ) -> RoutedSearch:
        c = self.config
        check_search(embedding, text, k, ef, c.max_k)
        if text is not None:
            query = embed_text(text_field(text, "query.text", c.max_text_length), c.dim)
        else:
            query = embedding_field(embedding, "query.embedding", c.dim)
        fan = await self.peers.fan_out_search(query, k, ef, filter, timeout=self.timeout)
        if not fan.complete and not allow_partial:
            raise PartitionsUnavailableError(fan.errors)
        hits = merge_hits(list(fan.results.values()), k)
        return RoutedSearch(hits, self.count, len(fan.results))

    async def get(self, node_id: int) -> Node | None:
        partition = await self.run(self.whole.partition_of, node_id)
        if partition is None:
            return None
        node: Node | None = await self.peers.get(partition, node_id, timeout=self.timeout)
        return node

    async def close(self) -> None:
        if self._nudges:
            await asyncio.wait(set(self._nudges), timeout=1.0)
