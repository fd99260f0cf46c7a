"""What the store keeps and hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec
import numpy as np


class Node(msgspec.Struct, frozen=True, order=True):
    """A stored fact: its node id, triple, confidence and parent's node id (None: a root).
    What reads hand out: no vector (a page of a thousand facts would read a thousand
    vectors that nobody looks at). Ordered by its fields in turn: by node id."""

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
    # What a read hands out, made once per record: a search answers with one per hit
    # (k of them, from cached records), and building them on each read, touching each
    # record's fields, was a tenth of a search at k = 50.
    node: Node = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        node = Node(
            self.node_id, self.subject, self.predicate, self.object, self.confidence, self.parent
        )
        object.__setattr__(self, "node", node)


class ExportRow(NamedTuple):
    """A live fact as an export writes it: its parent by id and by triple (so that an
    import into another store, where ids differ, can link it again), and its vector
    (float32 little-endian bytes) when asked for."""

    node_id: int
    subject: str
    predicate: str
    object: str
    confidence: float
    parent: int | None
    parent_triple: tuple[str, str, str] | None
    embedding: bytes | None


class Placement(NamedTuple):
    """A fact to store with the parent it names (by triple), not one the engine picks: what
    an import writes. The texts are canonical and the vector checked already."""

    subject: str
    predicate: str
    object: str
    confidence: float
    embedding: np.ndarray
    parent: tuple[str, str, str] | None


# The columns of a Node, in its order.
FACT_COLUMNS = "id, subject, predicate, object, confidence, parent"
# The columns of a fact as the subject or the object of a traversal's step.
ROLES = ("subject", "object")
# An id above every node id (a window that is not full ends nowhere).
NO_END = 2**63 - 1
# How far up a parent chain a store walks (ancestors; the live parent of a new node).
MAX_DEPTH = 1000


@dataclass(frozen=True)
class Change:
    """A write after a given sequence: the node as it now is, or ``None`` once deleted."""

    seq: int
    node_id: int
    record: NodeRecord | None


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


def export_row(row: tuple[Any, ...], embeddings: bool) -> ExportRow:
    """An export's row from the stores' query of it: ``id, subject, predicate, object,
    confidence, parent``, the parent's ``subject, predicate, object`` (NULL when it is not
    live), and the vector when asked for."""
    node_id, s, p, o, confidence, parent, ps, pp, po = row[:9]
    # A parent that is not live (never so: a delete moves the children) is no parent.
    parent_triple = (ps, pp, po) if ps is not None else None
    return ExportRow(
        node_id,
        s,
        p,
        o,
        confidence,
        parent if parent_triple else None,
        parent_triple,
        row[9] if embeddings else None,
    )


def prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``, in code point
    order (None: no bound), so that a prefix is an index range ``[prefix, end)``: the
    prefix with its last character incremented (surrogates skipped: they cannot be
    stored), or dropped when it is the last code point."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            nxt = last + 1
            if 0xD800 <= nxt <= 0xDFFF:
                nxt = 0xE000
            return "".join(chars) + chr(nxt)
    return None
