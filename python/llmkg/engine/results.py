"""What the engine answers."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Neighbor:
    node_id: int
    similarity: float


@dataclass(frozen=True)
class AllocationResult:
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
        return asdict(self)


@dataclass(frozen=True)
class Node:
    node_id: int
    subject: str
    predicate: str
    object: str
    confidence: float
    parent: int | None

    def fact(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "predicate": self.predicate,
            "object": self.object,
            "confidence": self.confidence,
        }


@dataclass(frozen=True)
class SearchHit:
    node_id: int
    score: float
    node: Node
