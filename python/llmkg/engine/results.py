"""What the engine answers.

Immutable msgspec structs rather than frozen dataclasses: a search builds one per hit
(its ``Node`` comes made with the store's record), and a frozen dataclass's ``__init__``
(one ``object.__setattr__`` per field) cost about 1.2 µs each, a struct's 0.08 µs; for
k = 50 that was a tenth of a search's Python time. They compare, hash and print like the
dataclasses did.
"""

from __future__ import annotations

from typing import Any

import msgspec

from llmkg.store.records import Node

__all__ = [
    "AllocationResult",
    "Entity",
    "ExpandedFact",
    "ExpandedSearch",
    "Neighbor",
    "Node",
    "Reached",
    "SearchHit",
    "Traversal",
]


class Neighbor(msgspec.Struct, frozen=True):
    """A node near an allocated fact, and its similarity to it."""

    node_id: int
    similarity: float


class AllocationResult(msgspec.Struct, frozen=True):
    """What ``allocate`` answers: the fact's node (``created`` False when the triple was
    stored already), its parent and nearest neighbours, how the candidates were found
    (``strategy``), the precision it is indexed at, and the confidence now stored."""

    node_id: int
    partition: int
    parent: Neighbor | None
    neighbors: list[Neighbor]
    strategy: str  # "direct" (exact candidates) or "hierarchical" (HNSW)
    precision: str
    confidence: float
    created: bool
    processing_time_ms: float

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


class SearchHit(msgspec.Struct, frozen=True):
    """A search result: the node and its full-precision score (higher is closer)."""

    node_id: int
    score: float
    node: Node


class Entity(msgspec.Struct, frozen=True):
    """A subject or object string: a page of the facts that have it as subject and a page
    of those that have it as object (each with the id after which its next page starts,
    or None at the end), and how many live facts of each predicate mention it."""

    name: str
    as_subject: list[Node]
    as_subject_next: int | None
    as_object: list[Node]
    as_object_next: int | None
    predicates: dict[str, int]


class Reached(msgspec.Struct, frozen=True):
    """A fact a traversal reached, ``hop`` steps from its start (0: a start node)."""

    hop: int
    node: Node


class Traversal(msgspec.Struct, frozen=True):
    """The facts a traversal reached, by hop, then node id. ``truncated``: ``max_facts``
    left reachable facts out; ``capped``: a hop read its cap of rows, and facts within
    reach may be missing (see ``Graph.traverse``)."""

    facts: list[Reached]
    truncated: bool
    capped: bool


class ExpandedFact(msgspec.Struct, frozen=True):
    """A fact connected to a search hit: ``hop`` steps from the hit ``source`` (its node
    id), the best-ranked hit that reaches it."""

    source: int
    hop: int
    node: Node


class ExpandedSearch(msgspec.Struct, frozen=True):
    """The hits of a search, best first, and the facts connected to them: by the rank of
    their source, then hop, then node id. ``truncated`` and ``capped`` as in
    ``Traversal``."""

    hits: list[SearchHit]
    expanded: list[ExpandedFact]
    truncated: bool
    capped: bool
