"""What the store keeps and hands out."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    """A write after a given sequence: the node as it now is, or ``None`` once deleted."""

    seq: int
    node_id: int
    record: NodeRecord | None
