"""Facts placed where they say they belong, mixed into the engine: the parent a fact
names (by triple) instead of the nearest neighbour that allocation picks, so that an
import reproduces the graph it was exported from. A batch is one store transaction,
then the linker, the filters and the caches take it as they take allocations."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from llmkg._core import embed_facts
from llmkg.engine.facts import FactError, PlacedFact, parse_placed
from llmkg.engine.records import record_size
from llmkg.engine.results import Node
from llmkg.store.records import Placement

if TYPE_CHECKING:
    from llmkg._core import Linker
    from llmkg.engine.config import EngineConfig
    from llmkg.engine.exclusion import WriteGate
    from llmkg.engine.filters import FactIndex
    from llmkg.engine.follow import Follower
    from llmkg.engine.quantization import AdaptivePrecision
    from llmkg.engine.records import RecordCache
    from llmkg.store import Store


def placements(placed: list[PlacedFact], dim: int) -> list[Placement]:
    """What the store writes for ``placed``: each fact with its vector, the built-in
    embedder's (all in one call) for the facts that came without one."""
    missing = [p.fact for p in placed if p.fact.embedding is None]
    embedded: Iterator[np.ndarray] = iter(
        embed_facts([(f.subject, f.predicate, f.object) for f in missing], dim) if missing else []
    )
    rows = []
    for p in placed:
        f = p.fact
        vector = f.embedding if f.embedding is not None else next(embedded)
        rows.append(Placement(f.subject, f.predicate, f.object, f.confidence, vector, p.parent))
    return rows


class Placing:
    config: EngineConfig
    store: Store
    linker: Linker
    precision: AdaptivePrecision
    facts: FactIndex
    records: RecordCache
    follower: Follower | None
    _gate: WriteGate
    _logged: Callable[[int], None]

    def place_many(self, facts: Iterable[Any]) -> list[tuple[Node, bool]]:
        """Store facts under the parents they name, in order: ``(node, created)`` each.

        A fact is a mapping as for ``allocate`` plus ``parent``: null (a root) or the
        ``subject``, ``predicate`` and ``object`` of its parent, which must be live
        (stored before, or placed earlier in the same call); a parent not found leaves the
        fact a root (``node.parent`` is None: ``relink`` can link it later). A triple
        stored already keeps its node, parent and vector; its confidence becomes the
        larger of the two, as in ``allocate``. Every fact is validated before any is
        stored (``FactError`` names ``facts[i]``); at most ``max_batch`` of them, stored
        in one transaction: all or none."""
        c = self.config
        given = list(facts)
        if len(given) > c.max_batch:
            raise FactError("facts", f"at most {c.max_batch} facts per batch, got {len(given)}")
        placed = [
            parse_placed(f, c.dim, c.max_text_length, prefix=f"facts[{i}]")
            for i, f in enumerate(given)
        ]
        return self._place(placed)

    def _place(self, placed: list[PlacedFact]) -> list[tuple[Node, bool]]:
        """``place_many`` of facts validated already."""
        c = self.config
        if not placed:
            return []
        rows = placements(placed, c.dim)
        # Before the commit: a linker too far behind refuses the batch, not half of it.
        self.linker.wait_room()
        with self._gate.write():
            results = self.store.place_many(rows)
            if self.follower is not None:
                # Applied by the follower, in sequence order with every other change.
                self.follower.wait_applied(max(r.seq for r, _ in results), c.catch_up_timeout)
            else:
                for record, created in results:
                    if created:
                        precision = self.precision.for_new(record.confidence)
                        self.linker.add(record.node_id, record.embedding, precision)
        if self.follower is None:
            for record, created in results:
                if created:
                    self._logged(record_size(record))
                    self.facts.add(
                        record.node_id,
                        record.subject,
                        record.predicate,
                        record.object,
                        record.confidence,
                    )
                elif self.facts.confidences([record.node_id]):
                    self.facts.set_confidence(record.node_id, record.confidence)
                    self.records.forget(record.node_id)  # cached with the old confidence
        return [(record.node, created) for record, created in results]

    def relink(self, node_id: int, parent: int) -> Node | None:
        """Make ``parent`` the parent of ``node_id`` (both live): the node as it now is, or
        None, with nothing changed, if either is not live or if ``node_id`` is ``parent``
        or one of its ancestors (the hierarchy stays a forest)."""
        with self._gate.write():
            record = self.store.relink(node_id, parent)
            if record is not None and self.follower is not None:
                self.follower.wait_applied(record.seq, self.config.catch_up_timeout)
        if record is None:
            return None
        self.records.forget(node_id)  # cached with its old parent
        return record.node
