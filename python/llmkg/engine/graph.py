"""The graph's reads, mixed into the engine: triple patterns, entities, and the allocation
hierarchy (children, ancestors). Answered by the store's indexes, not by the in-memory
fact index: the store is the source of truth, and a page must stay in id order however
the index is laid out.

Every listing is a keyset page: ``after`` is the last key of the previous page (a node
id, or for entities a name) and a page comes back with the key to pass next, or None
when nothing follows; a page reads ``limit + 1`` rows to know that without another
query. Pages are read separately, so a fact written between two pages shows up in the
later one if its key sorts after the cursor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from llmkg.engine import traversal as tr
from llmkg.engine.facts import FactError, text_field
from llmkg.engine.results import Entity, ExpandedFact, Node, Reached, SearchHit, Traversal
from llmkg.store.records import MAX_DEPTH

if TYPE_CHECKING:
    from llmkg.engine.config import EngineConfig
    from llmkg.store import Store

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


def check_limit(limit: Any, field: str = "limit", top: int = MAX_LIMIT) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= top:
        raise FactError(field, f"must be an integer from 1 to {top}")
    return limit


def _check_after(after: Any, field: str) -> int:
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise FactError(field, "must be a node id (an integer, 0 for the first page)")
    return after


def _page(rows: list[Node], limit: int) -> tuple[list[Node], int | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, rows[-1].node_id if more else None


class Graph:
    """Reads of the graph; expects the engine's ``store`` and ``config``."""

    store: Store
    config: EngineConfig

    def _text(self, value: Any, field: str) -> str | None:
        # The canonical form the engine stores facts in, so that " Ann  " finds "Ann".
        return None if value is None else text_field(value, field, self.config.max_text_length)

    def facts_matching(
        self,
        subject: str | None = None,
        predicate: str | None = None,
        object: str | None = None,
        min_confidence: float | None = None,
        limit: int = DEFAULT_LIMIT,
        after: int = 0,
    ) -> tuple[list[Node], int | None]:
        """Live facts with each given field equal (after canonicalization: trimmed, runs
        of whitespace as one space) and a confidence of at least ``min_confidence``, by
        node id, ``limit`` (1 to 1000) of them after id ``after``; with the id to pass as
        ``after`` for the next page, or None at the end. No field: every fact."""
        s = self._text(subject, "subject")
        p = self._text(predicate, "predicate")
        o = self._text(object, "object")
        if min_confidence is not None and (
            isinstance(min_confidence, bool)
            or not isinstance(min_confidence, (int, float))
            or not (math.isfinite(min_confidence) and 0.0 <= min_confidence <= 1.0)
        ):
            raise FactError("min_confidence", "must be a number from 0 to 1")
        limit = check_limit(limit)
        after = _check_after(after, "cursor")
        rows = self.store.match(s, p, o, min_confidence, after, limit + 1)
        return _page(rows, limit)

    def entity(
        self,
        name: str,
        limit: int = DEFAULT_LIMIT,
        subject_after: int = 0,
        object_after: int = 0,
    ) -> Entity | None:
        """The facts that mention ``name``: a page of each role (``limit`` facts after the
        given ids, by id) and the count of each predicate over all of them; None when no
        live fact mentions it."""
        text = self._text(name, "name")
        assert text is not None
        limit = check_limit(limit)
        subject_after = _check_after(subject_after, "subject_cursor")
        object_after = _check_after(object_after, "object_cursor")
        predicates = self.store.predicate_counts(text)
        if not predicates:
            return None
        as_subject, subject_next = _page(
            self.store.match(text, None, None, None, subject_after, limit + 1), limit
        )
        as_object, object_next = _page(
            self.store.match(None, None, text, None, object_after, limit + 1), limit
        )
        return Entity(text, as_subject, subject_next, as_object, object_next, predicates)

    def entities(
        self, prefix: str = "", limit: int = DEFAULT_LIMIT, after: str | None = None
    ) -> tuple[list[str], str | None]:
        """Distinct subjects and objects of live facts starting with ``prefix`` (taken
        as given, not canonicalized: "New " is a prefix of "New York"), in code point
        order, ``limit`` of them after the name ``after``; with the name to pass as
        ``after`` next, or None at the end."""
        if not isinstance(prefix, str):
            raise FactError("prefix", "must be a string")
        if len(prefix) > self.config.max_text_length:
            raise FactError("prefix", f"must be at most {self.config.max_text_length} characters")
        if after is not None and not isinstance(after, str):
            raise FactError("cursor", "must be a name")
        limit = check_limit(limit)
        names = self.store.entities(prefix, after, limit + 1)
        more = len(names) > limit
        names = names[:limit]
        return names, names[-1] if more else None

    def children(
        self, node_id: int, limit: int = DEFAULT_LIMIT, after: int = 0
    ) -> tuple[list[Node], int | None] | None:
        """The live nodes whose parent is ``node_id``, by id, a page as in
        ``facts_matching``; None if ``node_id`` is not live."""
        limit = check_limit(limit)
        after = _check_after(after, "cursor")
        if self.store.get(node_id) is None:
            return None
        return _page(self.store.children(node_id, after, limit + 1), limit)

    def ancestors(self, node_id: int, max_depth: int = MAX_DEPTH) -> list[Node] | None:
        """The parent of ``node_id``, its parent and so on to a root, nearest first: at
        most ``max_depth`` (1 to 1000) of them. None if ``node_id`` is not live."""
        max_depth = check_limit(max_depth, "max_depth", MAX_DEPTH)
        if self.store.get(node_id) is None:
            return None
        return self.store.ancestors(node_id, max_depth)

    def traverse(
        self,
        entities: Sequence[str] | None = None,
        nodes: Sequence[int] | None = None,
        hops: int = 1,
        direction: str = "out",
        predicates: Sequence[str] | None = None,
        max_facts: int = tr.DEFAULT_FACTS,
    ) -> Traversal:
        """The live facts within ``hops`` (1 to 3) of the start, breadth first, ordered by
        hop, then node id; at most ``max_facts`` (1 to 1000) of them: the first in that
        order.

        From ``entities`` (names, canonicalized), hop 1 is their facts in the
        ``direction``: ``"out"`` as subject, ``"in"`` as object, ``"both"`` either; the
        far ends of the facts of a hop (objects, subjects, either) not visited before
        are where the next hop starts. From ``nodes`` (ids; one of no live node
        reaches nothing), hop 0 is their own facts and their far ends are the first
        frontier. ``predicates``: only facts of these predicates are followed (hop 0 is
        answered whatever its predicate). A fact is answered once, at its least hop.
        At most 100 entities or nodes. ``truncated``: ``max_facts`` left reachable facts
        out; ``capped``: a hop read its cap of rows before it saw every fact (see
        ``traversal.py``), and facts within reach may be missing."""
        c = self.config
        names, ids = tr.check_start(entities, nodes, c.max_text_length)
        hops = tr.check_hops(hops, "hops", tr.MAX_HOPS)
        direction = tr.check_direction(direction)
        followed = tr.check_predicates(predicates, "predicates", c.max_text_length)
        max_facts = check_limit(max_facts, "max_facts", tr.MAX_FACTS)
        if ids:
            records = self.store.get_many(ids)
            rows = [r.node for r in records.values()]
            walk = tr.start_walk(rows, direction, max_facts)
        else:
            walk = tr.Walk(names, (), max_facts)
        for hop in range(1, hops + 1):
            tr.step(self.store, [walk], hop, direction, followed)
        facts = [Reached(hop, r) for hop, r in walk.reached]
        return Traversal(facts, walk.truncated, walk.capped)

    def _expansion(self, expand: Any) -> tuple[int, int, list[str] | None]:
        """``hops``, ``max_facts`` and ``predicates`` of a search's ``expand``."""
        if not isinstance(expand, Mapping):
            raise FactError("query.expand", "must be an object")
        for key in expand:
            if key not in ("hops", "max_facts", "predicates"):
                raise FactError(f"query.expand.{key}", "unknown field")
        hops = tr.check_hops(expand.get("hops", 1), "query.expand.hops", tr.EXPAND_MAX_HOPS)
        max_facts = check_limit(
            expand.get("max_facts", tr.EXPAND_DEFAULT_FACTS),
            "query.expand.max_facts",
            tr.EXPAND_MAX_FACTS,
        )
        predicates = tr.check_predicates(
            expand.get("predicates"), "query.expand.predicates", self.config.max_text_length
        )
        return hops, max_facts, predicates

    def _expand(
        self, hits: Sequence[SearchHit], hops: int, max_facts: int, predicates: list[str] | None
    ) -> tuple[list[ExpandedFact], bool, bool]:
        """The facts within ``hops`` of each hit's subject and object (a walk from the hit
        in direction "both"), by the hit's rank, then hop, then id; without the hits and
        without repeats (a fact is answered from the best-ranked hit that reaches it).

        Walks run a batch of hits at a time, in rank order, until ``max_facts + 1`` facts
        are found (the last one only says that the answer is truncated). A walk keeps
        ``max_facts + 1 + len(hits)`` facts at most: of its first ones, at most
        ``len(hits)`` are hits and at most ``max_facts`` were answered from better hits,
        so a walk cut short by its budget still fills the answer."""
        hit_ids = {h.node_id for h in hits}
        wanted = max_facts + 1
        out: list[ExpandedFact] = []
        answered: set[int] = set()
        capped = False
        for first in range(0, len(hits), tr.EXPAND_BATCH):
            batch = hits[first : first + tr.EXPAND_BATCH]
            walks = [
                tr.Walk((h.node.subject, h.node.object), [h.node], wanted + len(hits))
                for h in batch
            ]
            for hop in range(1, hops + 1):
                tr.step(self.store, walks, hop, "both", predicates, tr.EXPAND_ROWS_PER_HOP)
            for hit, walk in zip(batch, walks, strict=True):
                capped = capped or walk.capped
                for hop, r in walk.reached:
                    if r.node_id in hit_ids or r.node_id in answered:
                        continue
                    answered.add(r.node_id)
                    out.append(ExpandedFact(hit.node_id, hop, r))
                    if len(out) == wanted:
                        return out[:max_facts], True, capped
        return out, False, capped
