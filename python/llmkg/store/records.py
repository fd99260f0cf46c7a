"""What the store keeps and hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class NodeRecord:
    """One fact placed in the graph."""

    node_id: int
    subject: str
    predicate: str
    object: str
    confidence: float
    # Arrays have no single truth value: records compare by everything else.
    embedding: np.ndarray = field(compare=False)
    parent: int | None
    seq: int
    reads: int = 0


@dataclass(frozen=True)
class Change:
    """A write after a given sequence: the node as it now is, or ``None`` once deleted
    (then ``triple`` is the deleted node's subject, predicate and object when the store
    keeps them, so that a follower can drop it from its filters)."""

    seq: int
    node_id: int
    record: NodeRecord | None
    triple: tuple[str, str, str] | None = None


def record_from_row(row: tuple[Any, ...]) -> NodeRecord:
    """A node from a row of the stores' common column order: ``id, subject, predicate,
    object, confidence, embedding (float32 little-endian bytes), parent, seq, reads,
    deleted``."""
    node_id, s, p, o, conf, blob, parent, seq, reads, _ = row
    return NodeRecord(
        node_id=node_id,
        subject=s,
        predicate=p,
        object=o,
        confidence=conf,
        embedding=np.frombuffer(blob, dtype="<f4"),
        parent=parent,
        seq=seq,
        reads=reads,
    )
