"""The PostgreSQL store's bulk work for exports and imports: pages of live facts with their
parents' triples, facts placed under the parents they name (a batch in one transaction,
a few statements whatever its size), and a parent set afterwards. Mixed into
``PostgresStore``, whose pooled connections it uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import psycopg

from llmkg.store.pgconn import Connections
from llmkg.store.records import (
    MAX_DEPTH,
    ExportRow,
    NodeRecord,
    Placement,
    export_row,
    record_from_row,
)

COLUMNS = "id, subject, predicate, object, confidence, embedding, parent, seq, reads, deleted"
EXPORT = """SELECT n.id, n.subject, n.predicate, n.object, n.confidence, n.parent,
    p.subject, p.predicate, p.object{embedding}
FROM llmkg_nodes n LEFT JOIN llmkg_nodes p ON p.id = n.parent AND NOT p.deleted
WHERE n.partition = ANY(%s) AND NOT n.deleted AND n.id > %s ORDER BY n.id LIMIT %s"""
# Whether %(node)s is %(start)s or one of its ancestors, within MAX_DEPTH steps (a chain
# deeper than that counts as one too: no link is made that the graph's reads cannot walk).
IN_CHAIN = """WITH RECURSIVE up(id, depth) AS (
    SELECT %(start)s::bigint, 0
    UNION ALL
    SELECT n.parent, up.depth + 1 FROM up JOIN llmkg_nodes n
        ON n.partition = %(p)s AND n.id = up.id
    WHERE n.parent IS NOT NULL AND up.depth < %(depth)s)
SELECT bool_or(id = %(node)s) OR max(depth) >= %(depth)s FROM up"""
Triple = tuple[str, str, str]


class _Slot:
    """One triple of a batch as it will be once the batch commits: its row (in ``COLUMNS``
    order; no id yet when new), whether the batch creates it, and whether it changes."""

    __slots__ = ("changed", "new", "parent_slot", "row")

    def __init__(self, row: list[Any], new: bool) -> None:
        self.row, self.new, self.changed = row, new, new
        self.parent_slot: _Slot | None = None  # a parent placed earlier in the same batch


class BulkWrites(Connections):
    """Expects the store's ``partition`` and ``_committed``."""

    partition: int
    scope: list[int]
    _committed: Callable[[int | None], None]

    def export_page(self, after: int, limit: int, embeddings: bool) -> list[ExportRow]:
        query = EXPORT.format(embedding=", n.embedding" if embeddings else "")
        rows = self._rows(query, (self.scope, after, limit))
        return [export_row(r, embeddings) for r in rows]

    def place_many(self, facts: Sequence[Placement]) -> list[tuple[NodeRecord, bool]]:
        """See ``Store.place_many``. The batch holds its partition's sequence counter from
        its first statement to its commit, so no other writer stores one of its triples
        meanwhile; its sequence numbers are given out once its outcome is known, without
        gaps (a follower waits for the counter's last number to appear)."""
        from llmkg.store.placement import triple_key

        if not facts:
            return []
        p = self.partition
        wanted = {triple_key(f.subject, f.predicate, f.object) for f in facts}
        wanted |= {triple_key(*f.parent) for f in facts if f.parent is not None}
        with self._connection() as conn:
            with conn.transaction():
                counter = conn.execute(
                    "UPDATE llmkg_partitions SET last_seq = last_seq WHERE partition = %s "
                    "RETURNING last_seq",
                    (p,),
                ).fetchone()
                assert counter is not None, "open_schema creates the partition's counter"
                first_seq = seq = int(counter[0])
                live = {
                    (r[1], r[2], r[3]): r
                    for r in conn.execute(
                        f"SELECT {COLUMNS} FROM llmkg_nodes WHERE partition = %s "
                        "AND triple_key = ANY(%s) AND NOT deleted",
                        (p, list(wanted)),
                    )
                }
                slots, outcome = _plan(facts, live)
                for slot in slots:  # in the order of their first fact
                    if slot.changed:
                        seq += 1
                        slot.row[7] = seq
                _write(conn, p, slots)
                if seq > first_seq:
                    conn.execute(
                        "UPDATE llmkg_partitions SET last_seq = %s WHERE partition = %s", (seq, p)
                    )
        if seq > first_seq:
            self._committed(seq)
        return [(record_from_row(tuple(slot.row)), created) for slot, created in outcome]

    def relink(self, node_id: int, parent: int) -> NodeRecord | None:
        """See ``Store.relink``."""
        p = self.partition
        record = None
        with self._connection() as conn:
            with conn.transaction() as tx:
                # The counter first, as every write: a delete of either node waits for this
                # one (or committed before it, and is seen below).
                counter = conn.execute(
                    "UPDATE llmkg_partitions SET last_seq = last_seq + 1 WHERE partition = %s "
                    "RETURNING last_seq",
                    (p,),
                ).fetchone()
                assert counter is not None
                seq = int(counter[0])
                cycle = conn.execute(
                    IN_CHAIN, {"p": p, "start": parent, "node": node_id, "depth": MAX_DEPTH}
                ).fetchone()
                row = None
                if cycle is not None and not cycle[0]:
                    row = conn.execute(
                        f"UPDATE llmkg_nodes SET parent = %s, seq = %s WHERE partition = %s "
                        "AND id = %s AND NOT deleted AND EXISTS (SELECT 1 FROM llmkg_nodes "
                        "WHERE partition = %s AND id = %s AND NOT deleted) "
                        f"RETURNING {COLUMNS}",
                        (parent, seq, p, node_id, p, parent),
                    ).fetchone()
                if row is None:
                    raise psycopg.Rollback(tx)  # gives the sequence number back
                record = record_from_row(row)
        if record is not None:
            self._committed(record.seq)
        return record


def _plan(
    facts: Sequence[Placement], live: dict[Triple, tuple[Any, ...]]
) -> tuple[list[_Slot], list[tuple[_Slot, bool]]]:
    """The batch's triples (``Store.place_many``'s rules) and, for each fact, its slot and
    whether it created it."""
    slots: dict[Triple, _Slot] = {}
    outcome = []
    for f in facts:
        triple = (f.subject, f.predicate, f.object)
        slot = slots.get(triple)
        if slot is None and triple in live:
            slot = slots[triple] = _Slot(list(live[triple]), new=False)
        if slot is not None:
            if f.confidence > slot.row[4]:
                slot.row[4] = f.confidence
                slot.changed = True
            outcome.append((slot, False))
            continue
        blob = np.ascontiguousarray(f.embedding, dtype="<f4").tobytes()
        slot = _Slot([None, *triple, f.confidence, blob, None, 0, 0, False], new=True)
        if f.parent is not None:  # looked up before the slot is there: never itself
            parent = slots.get(f.parent)  # earlier in the batch, or stored
            if parent is not None and parent.new:
                slot.parent_slot = parent
            elif parent is not None or f.parent in live:
                slot.row[6] = (parent.row if parent else live[f.parent])[0]
        slots[triple] = slot
        outcome.append((slot, True))
    return list(slots.values()), outcome


def _write(conn: psycopg.Connection[Any], partition: int, slots: list[_Slot]) -> None:
    from llmkg.store.placement import triple_key

    new = [s for s in slots if s.new]
    with conn.cursor() as cur:
        if new:
            cur.executemany(
                "INSERT INTO llmkg_nodes (partition, triple_key, subject, predicate, object, "
                "confidence, embedding, parent, seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id",
                [(partition, triple_key(*s.row[1:4]), *s.row[1:5], *s.row[5:8]) for s in new],
                returning=True,
            )
            for slot, node_id in zip(new, _each_result(cur, len(new)), strict=True):
                slot.row[0] = node_id
        # Parents placed earlier in the batch: their ids are known now. The same
        # transaction, so the row keeps the sequence of its insert.
        linked = [s for s in slots if s.parent_slot is not None]
        for s in linked:
            assert s.parent_slot is not None
            s.row[6] = s.parent_slot.row[0]
        if linked:
            cur.executemany(
                "UPDATE llmkg_nodes SET parent = %s WHERE partition = %s AND id = %s",
                [(s.row[6], partition, s.row[0]) for s in linked],
            )
        raised = [s for s in slots if s.changed and not s.new]
        if raised:
            cur.executemany(
                "UPDATE llmkg_nodes SET confidence = %s, seq = %s WHERE partition = %s AND id = %s",
                [(s.row[4], s.row[7], partition, s.row[0]) for s in raised],
            )


def _each_result(cur: psycopg.Cursor[Any], n: int) -> Iterator[int]:
    """The ids of an ``executemany(..., returning=True)``, one result set per row."""
    for i in range(n):
        row = cur.fetchone()
        assert row is not None
        yield int(row[0])
        if i < n - 1:
            cur.nextset()
