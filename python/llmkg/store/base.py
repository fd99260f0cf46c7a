"""What the engine needs of a store, whichever database keeps the facts, and the errors
every store raises alike."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np

from llmkg.store.records import Change, ExportRow, Node, NodeRecord, Placement

# Called as a copy goes: (pages copied so far, pages in all, bytes of a page).
CopyProgress = Callable[[int, int, int], None]


class BackupUnsupportedError(RuntimeError):
    """The store's data is backed up by its database, not by llmkg's ``backup``."""


class Store(Protocol):
    """The source of truth for facts, their full vectors and parent links.

    Every write carries a sequence number, and ``changes_after(seq)`` hands back the
    writes after ``seq`` in sequence order, so that an index snapshot tagged with a
    sequence can be brought up to date. Writes return once committed.
    """

    @property
    def store_id(self) -> str:
        """A random id given when the store was created; snapshots carry it."""
        ...

    @property
    def last_seq(self) -> int:
        """The last sequence number given out."""
        ...

    @property
    def committed_seq(self) -> int:
        """A sequence number up to which every write made through this store committed."""
        ...

    @property
    def commits(self) -> int:
        """Transactions committed by this store object (for the stats)."""
        ...

    @property
    def writes(self) -> int:
        """Write operations committed by this store object (for the stats)."""
        ...

    @property
    def failed_writes(self) -> int:
        """Writes (or, for a database server, operations) refused by a fault of the store."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the last of them failed."""
        ...

    def health(self) -> tuple[bool, str]:
        """Whether the store can take writes and answer reads now, and a line saying why
        (not); readiness shows it."""
        ...

    def insert(
        self,
        subject: str,
        predicate: str,
        object: str,
        confidence: float,
        embedding: np.ndarray,
        parent: int | None = None,
        merge: Callable[[float, float], float] = max,
    ) -> tuple[NodeRecord, bool]:
        """Store a fact, or find it: ``(record, created)``. A live triple keeps its node;
        its confidence becomes ``merge(old, new)``."""
        ...

    def raise_confidence(self, node_id: int, confidence: float) -> NodeRecord | None:
        """The live node with its confidence raised to ``confidence`` if that is higher;
        None if the node is not live."""
        ...

    def delete(self, node_id: int) -> bool:
        """Delete a node (a tombstone with a sequence); False if it was not live. Its
        children are re-parented as ``detach`` says."""
        ...

    def detach(self, node_id: int) -> list[int] | None:
        """Delete a node and, in the same transaction, give each of its live children the
        deleted node's parent (None at a root), each under a sequence of its own, so that
        no live node ever names a deleted parent. The ids of the children moved, or None
        if the node was not live. ``insert`` keeps the same rule for a parent deleted
        while its child was being placed: the child gets the first live ancestor."""
        ...

    def place_many(self, facts: Sequence[Placement]) -> list[tuple[NodeRecord, bool]]:
        """Store each fact with the parent it names, in order and in one transaction (all
        or none): ``(record, created)`` each. The parent is the live node of that triple,
        stored before or placed earlier in the same call; None if there is none (yet). A
        triple that is live already keeps its node, parent and vector; its confidence
        becomes the larger of the two (``created`` false)."""
        ...

    def relink(self, node_id: int, parent: int) -> NodeRecord | None:
        """Make the live node ``parent`` the parent of the live node ``node_id``, under a
        new sequence: the node as it now is, or None (nothing written) if either is not
        live or if ``node_id`` is ``parent`` or one of its ancestors (a cycle)."""
        ...

    def add_reads(self, counts: dict[int, int]) -> None:
        """Add to the read counters of nodes."""
        ...

    def get(self, node_id: int) -> NodeRecord | None: ...

    def get_many(self, node_ids: Iterable[int]) -> dict[int, NodeRecord]: ...

    def find(self, subject: str, predicate: str, object: str) -> NodeRecord | None: ...

    def changes_after(self, seq: int) -> Iterator[Change]:
        """Every node written after ``seq``, in sequence order: the live record, or None
        for a deleted node."""
        ...

    def iter_live(self) -> Iterator[tuple[int, str, str, str, float, int]]:
        """``(id, subject, predicate, object, confidence, reads)`` of every live node."""
        ...

    def most_read(self, n: int) -> list[int]: ...

    def export_page(self, after: int, limit: int, embeddings: bool) -> list[ExportRow]:
        """Up to ``limit`` live facts of ids above ``after``, by id, each with its parent's
        id and triple (and its vector if ``embeddings``). One read: a page is consistent
        in itself; pages read apart see the writes committed between them."""
        ...

    # ---- the graph's reads: live facts only, pages in key order --------------------------

    def match(
        self,
        subject: str | None,
        predicate: str | None,
        object: str | None,
        min_confidence: float | None,
        after: int,
        limit: int,
    ) -> list[Node]:
        """Up to ``limit`` live facts with every given field equal (and at least
        ``min_confidence``), of ids above ``after``, by id."""
        ...

    def children(self, node_id: int, after: int, limit: int) -> list[Node]:
        """Up to ``limit`` live nodes whose parent is ``node_id``, of ids above ``after``,
        by id."""
        ...

    def ancestors(self, node_id: int, max_depth: int) -> list[Node]:
        """The parent of ``node_id``, its parent and so on to the root, nearest first, at
        most ``max_depth`` of them."""
        ...

    def entities(self, prefix: str, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` distinct subjects and objects of live facts that start with
        ``prefix`` and sort after ``after``, in code point order."""
        ...

    def predicate_counts(self, name: str) -> dict[str, int]:
        """How many live facts of each predicate have ``name`` as subject or object (a
        fact with it as both counts once)."""
        ...

    def facts_around(
        self, names: Sequence[str], role: str, predicates: Sequence[str] | None, width: int
    ) -> tuple[list[Node], dict[str, int]]:
        """For each of ``names``, a window of its ``width`` live facts of lowest ids that
        have it as ``role`` (``"subject"`` or ``"object"``): the facts of every window
        that have a predicate in ``predicates`` (all of them when None), by id; and, for
        each name whose window is full (it may have more facts), the id of the window's
        last fact. One query for every name, reading at most ``width`` index entries of
        each: a name with a million facts costs what one with ``width`` does."""
        ...

    def count(self) -> int: ...

    def sync(self) -> None:
        """Return once every write acknowledged so far is durable."""
        ...

    def wal_bytes(self) -> int:
        """Bytes of the store's own write-ahead log (0 when the database keeps it)."""
        ...

    def check_backup(self) -> None:
        """Raise ``BackupUnsupportedError`` when ``backup_to`` cannot copy this store, so
        that a backup fails before it writes anything."""
        ...

    def backup_to(self, dest: str | os.PathLike[str], progress: CopyProgress | None = None) -> None:
        """A consistent copy of the store at ``dest``; ``progress`` is told how far it is."""
        ...

    def close(self) -> None: ...
