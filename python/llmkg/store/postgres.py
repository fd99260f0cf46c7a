"""The PostgreSQL store: the same facts, sequences and tombstones as the SQLite store, in a
database that several processes can share (ARCHITECTURE.md, "Scale-out").

Tables (created and versioned by llmkg; ``SCHEMA_VERSION`` in ``llmkg_meta``):

- ``llmkg_meta(key)``: facts about the whole database: ``schema_version`` and
  ``store_id`` (random, given at creation; index snapshots carry it). Shared by every
  partition: distributed by partition, it would become a reference table.
- ``llmkg_partitions(partition)``: ``last_seq``, the last sequence number of the partition.
- ``llmkg_nodes(partition, id)``: the facts. ``id`` comes from an identity column, global
  over partitions and below 2^53 (exact in a JSON number). A delete is a tombstone: the
  row stays, marked ``deleted``, without its vector, under the sequence of the delete. The
  canonical triple is unique among the live rows of a partition (a partial unique index on
  its SHA-256: a B-tree entry cannot hold three texts of up to 4096 characters each).

Every table's key starts with ``partition`` (the meta table aside), so that the tables
can later be distributed by it without a redesign.

Sequences follow commit order: a write first increments its partition's counter row in
its own transaction (``UPDATE ... RETURNING``). The row stays locked until that
transaction ends, so the next write of the partition gets its number only after this one
committed (or rolled back, undoing its increment: numbers have no gaps). A reader that
sees sequence n committed therefore sees every sequence below n, and ``changes_after``
never skips a write that commits later with a smaller number.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import psycopg

from llmkg.store.base import BackupUnsupportedError
from llmkg.store.errors import StoreClosedError, StoreUnavailableError
from llmkg.store.pgbulk import BulkWrites
from llmkg.store.pgconn import Connections
from llmkg.store.pggraph import GraphReads
from llmkg.store.pgschema import open_schema
from llmkg.store.placement import triple_key
from llmkg.store.records import MAX_DEPTH, Change, NodeRecord, record_from_row
from llmkg.store.schema import StoreOpenError

PAGE = 1000  # rows per query of the long reads (changes_after, iter_live, get_many)

COLUMNS = "id, subject, predicate, object, confidence, embedding, parent, seq, reads, deleted"
LIVE_BY_ID = f"SELECT {COLUMNS} FROM llmkg_nodes WHERE partition = %s AND id = %s AND NOT deleted"
LIVE_IN_SCOPE = (
    f"SELECT {COLUMNS} FROM llmkg_nodes WHERE partition = ANY(%s) AND id = %s AND NOT deleted"
)
LIVE_BY_TRIPLE = (
    f"SELECT {COLUMNS} FROM llmkg_nodes WHERE partition = %s AND triple_key = %s "
    "AND NOT deleted AND subject = %s AND predicate = %s AND object = %s"
)
# The first live node up the chain from %(id)s (itself if live): a tombstone keeps the
# parent its children were given when it was deleted.
# In whichever partition each is: a parent may live in another partition than its child
# (the router picks it among every partition's candidates).
LIVE_ANCESTOR = """WITH RECURSIVE up(id, deleted, depth) AS (
    SELECT id, deleted, 0 FROM llmkg_nodes WHERE id = %(id)s
    UNION ALL
    SELECT n.id, n.deleted, up.depth + 1 FROM up
        JOIN llmkg_nodes t ON t.id = up.id
        JOIN llmkg_nodes n ON n.id = t.parent
    WHERE up.deleted AND up.depth < %(depth)s)
SELECT id FROM up WHERE NOT deleted"""
NEXT_SEQ = (
    "UPDATE llmkg_partitions SET last_seq = last_seq + 1 WHERE partition = %s RETURNING last_seq"
)
# A new fact in one statement after NEXT_SEQ, in the same transaction: its sequence is the
# counter just taken, its parent the first live one up from the given (as LIVE_ANCESTOR).
# Without ON CONFLICT: a live duplicate fails the transaction, giving the number back.
INSERT_NEW = f"""INSERT INTO llmkg_nodes (partition, triple_key, subject, predicate, object,
        confidence, embedding, parent, seq)
    VALUES (%(p)s, %(key)s, %(s)s, %(pr)s, %(o)s, %(c)s, %(e)s,
        CASE WHEN %(id)s::bigint IS NULL THEN NULL ELSE ({LIVE_ANCESTOR} LIMIT 1) END,
        (SELECT last_seq FROM llmkg_partitions WHERE partition = %(p)s))
    RETURNING {COLUMNS}"""


def _change(row: tuple[Any, ...]) -> Change:
    if row[9]:  # a tombstone
        return Change(row[7], row[0], None)
    return Change(row[7], row[0], record_from_row(row))


class PostgresStore(BulkWrites, GraphReads):
    """Facts of one partition in a PostgreSQL database, through a pool of connections.

    ``connect_timeout`` (seconds) bounds connecting and waiting for a pooled connection:
    past it an operation raises ``StoreUnavailableError``. ``statement_timeout`` (seconds,
    0: none) bounds each statement on the server. ``migrate``: whether opening may upgrade
    an older schema (``pgschema.py``). ``partition_count``: the partitions the database
    is split into, fixed when it is created (``StorePartitionsError`` otherwise)."""

    def __init__(
        self,
        dsn: str,
        *,
        partition: int = 0,
        partition_count: int = 1,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        migrate: bool = True,
        whole_graph: bool = False,
    ) -> None:
        Connections.__init__(self, dsn, pool_size, connect_timeout, statement_timeout)
        self.partition = partition
        # What get, get_many, the graph's reads and the export cover: this partition, or
        # (a router's view of a partitioned graph) every partition. Writes, changes and
        # counts are the partition's own either way.
        self.scope = list(range(partition_count)) if whole_graph else [partition]
        self.commits = 0
        self.writes = 0
        try:
            with self._connection() as conn:
                self.store_id = open_schema(
                    conn, self.target, self.partition, migrate, partition_count
                )
                self.committed_seq = self._read_last_seq(conn)
        except BaseException:
            self._pool.close()
            raise

    def health(self) -> tuple[bool, str]:
        """Whether the database answers a query, with a line saying why not."""
        try:
            self._read(lambda conn: conn.execute("SELECT 1").fetchone())
        except (StoreUnavailableError, StoreClosedError) as e:
            return False, str(e)
        return True, f"sequence {self.committed_seq}, {self.failed_writes} operations failed"

    def _next_seq(self, conn: psycopg.Connection[Any]) -> int:
        """The partition's next sequence number. From here to the end of the transaction
        the partition's other writers wait: see the module's docstring."""
        row = conn.execute(NEXT_SEQ, (self.partition,)).fetchone()
        if row is None:
            raise StoreOpenError(f"{self.target} has no counter row for partition {self.partition}")
        return int(row[0])

    def _committed(self, seq: int | None) -> None:
        with self._lock:
            self.commits += 1
            self.writes += 1
            if seq is not None:
                self.committed_seq = max(self.committed_seq, seq)

    # ---- writes ------------------------------------------------------------------------

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
        """Store a fact, or find it: ``(record, created)``. A triple already live keeps its
        node; its confidence becomes ``merge(old, new)``. Returns once committed."""
        key = triple_key(subject, predicate, object)
        by_triple = (self.partition, key, subject, predicate, object)
        blob = np.ascontiguousarray(embedding, dtype="<f4").tobytes()
        row = self._insert_new(key, subject, predicate, object, confidence, blob, parent)
        if row is not None:
            record = record_from_row(row)
            self._committed(record.seq)
            return record, True
        # Live already (a retried allocation, or a concurrent one).
        rows = self._rows(LIVE_BY_TRIPLE, by_triple)
        if rows and merge(rows[0][4], confidence) == rows[0][4]:
            return record_from_row(rows[0]), False
        # Its confidence to raise, or deleted since: under the counter, step by step.
        with self._connection() as conn:
            with conn.transaction() as tx:
                seq = self._next_seq(conn)
                if parent is not None:
                    # Holding the counter: a delete of the parent either committed before
                    # (and this sees its tombstone) or waits until this commits (and then
                    # re-parents this node too).
                    live = conn.execute(
                        LIVE_ANCESTOR, {"p": self.partition, "id": parent, "depth": MAX_DEPTH}
                    ).fetchone()
                    parent = live[0] if live else None
                row = conn.execute(
                    f"INSERT INTO llmkg_nodes (partition, triple_key, subject, predicate, "
                    "object, confidence, embedding, parent, seq) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (partition, triple_key) WHERE NOT deleted DO NOTHING "
                    f"RETURNING {COLUMNS}",
                    (*by_triple[:2], subject, predicate, object, confidence, blob, parent, seq),
                ).fetchone()
                created = row is not None
                if row is None:
                    # Live already: stored since the read above by a writer that held the
                    # counter before this one (and so has committed).
                    row = conn.execute(LIVE_BY_TRIPLE, by_triple).fetchone()
                    assert row is not None, "a conflicting live row is visible once committed"
                    new = merge(row[4], confidence)
                    if new == row[4]:
                        result = record_from_row(row), False
                        raise psycopg.Rollback(tx)  # gives the sequence number back
                    row = conn.execute(
                        f"UPDATE llmkg_nodes SET confidence = %s, seq = %s "
                        f"WHERE partition = %s AND id = %s RETURNING {COLUMNS}",
                        (new, seq, self.partition, row[0]),
                    ).fetchone()
                    assert row is not None
                result = record_from_row(row), created
            if result[0].seq == seq:
                self._committed(seq)
        return result

    def _insert_new(
        self,
        key: bytes,
        subject: str,
        predicate: str,
        object: str,
        confidence: float,
        blob: bytes,
        parent: int | None,
    ) -> tuple[Any, ...] | None:
        """The new row, or None if the triple is live already (nothing written).

        The counter, the row and the commit go in one round trip (a pipeline): the
        partition's writers wait for the counter row's lock from its update to the
        commit, and a round trip to this process in between, under its load, would
        hold them all up."""
        params = {
            "p": self.partition,
            "key": key,
            "s": subject,
            "pr": predicate,
            "o": object,
            "c": confidence,
            "e": blob,
            "id": parent,
            "depth": MAX_DEPTH,
        }
        with self._connection() as conn:
            try:
                with conn.pipeline(), conn.transaction():
                    conn.execute(NEXT_SEQ, (self.partition,))
                    cursor = conn.execute(INSERT_NEW, params)
            except psycopg.errors.UniqueViolation:
                return None
            row: tuple[Any, ...] | None = cursor.fetchone()
        return row

    def raise_confidence(self, node_id: int, confidence: float) -> NodeRecord | None:
        """The live node ``node_id`` with its confidence raised to ``confidence`` if that is
        higher; None if the node is not live. Never creates a row."""
        record = self.get(node_id)
        if record is None or confidence <= record.confidence:
            return record
        with self._connection() as conn:
            with conn.transaction() as tx:
                seq = self._next_seq(conn)
                row = conn.execute(
                    f"UPDATE llmkg_nodes SET confidence = %s, seq = %s WHERE partition = %s "
                    f"AND id = %s AND NOT deleted AND confidence < %s RETURNING {COLUMNS}",
                    (confidence, seq, self.partition, node_id, confidence),
                ).fetchone()
                if row is None:  # deleted, or raised as high by another writer meanwhile
                    found = conn.execute(LIVE_BY_ID, (self.partition, node_id)).fetchone()
                    record = record_from_row(found) if found else None
                    raise psycopg.Rollback(tx)
                record = record_from_row(row)
            if record is not None and record.seq == seq:
                self._committed(seq)
        return record

    def delete(self, node_id: int) -> bool:
        """Delete a node (a tombstone under a new sequence); False if it was not live.
        Returns once committed."""
        return self.detach(node_id) is not None

    def detach(self, node_id: int) -> list[int] | None:
        """Delete a node and give its live children its parent, in one transaction (see
        ``Store``); the children moved, or None if the node was not live.

        Children may live in other partitions: each moved child takes the next sequence
        number of its own partition, so that its partition's followers see the move. The
        delete holds every partition's counter (taken in partition order, so two deletes
        cannot deadlock; a write holds only its own), so that no write in any partition
        can give the node a child between the delete's reads and its commit."""
        p = self.partition
        children: list[int] | None = None
        with self._connection() as conn:
            with conn.transaction() as tx:
                conn.execute(
                    "SELECT partition FROM llmkg_partitions ORDER BY partition FOR UPDATE"
                ).fetchall()
                seq = self._next_seq(conn)
                row = conn.execute(
                    "UPDATE llmkg_nodes SET deleted = true, embedding = NULL, seq = %s "
                    "WHERE partition = %s AND id = %s AND NOT deleted RETURNING parent",
                    (seq, p, node_id),
                ).fetchone()
                if row is None:
                    raise psycopg.Rollback(tx)
                moved = conn.execute(
                    "SELECT partition, id FROM llmkg_nodes WHERE parent = %s AND NOT deleted "
                    "ORDER BY partition, id",
                    (node_id,),
                ).fetchall()
                children = [child for _, child in moved]
                updates = []
                for partition in sorted({part for part, _ in moved}):
                    mine = [child for part, child in moved if part == partition]
                    # A sequence each, taken at once from the counter held already.
                    last = conn.execute(
                        "UPDATE llmkg_partitions SET last_seq = last_seq + %s "
                        "WHERE partition = %s RETURNING last_seq",
                        (len(mine), partition),
                    ).fetchone()
                    assert last is not None
                    first = int(last[0]) - len(mine) + 1
                    updates += [(row[0], first + i, partition, c) for i, c in enumerate(mine)]
                    if partition == p:
                        seq = int(last[0])
                if updates:
                    with conn.cursor() as cur:
                        cur.executemany(
                            "UPDATE llmkg_nodes SET parent = %s, seq = %s "
                            "WHERE partition = %s AND id = %s",
                            updates,
                        )
        if children is not None:
            self._committed(seq)
        return children

    def add_reads(self, counts: dict[int, int]) -> None:
        """Add to the read counters of nodes (not a change: no sequence number)."""
        if not counts:
            return
        # In id order, so that two processes adding to the same rows lock them in the
        # same order and cannot deadlock.
        params = [(int(n), self.partition, int(i)) for i, n in sorted(counts.items())]
        with self._connection() as conn:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "UPDATE llmkg_nodes SET reads = reads + %s WHERE partition = %s AND id = %s",
                    params,
                )
        self._committed(None)

    def sync(self) -> None:
        """Nothing to do: a commit returned by PostgreSQL is durable (``synchronous_commit``,
        and with a synchronous standby, on two machines)."""

    # ---- reads -------------------------------------------------------------------------

    def get(self, node_id: int) -> NodeRecord | None:
        rows = self._rows(LIVE_IN_SCOPE, (self.scope, node_id))
        return record_from_row(rows[0]) if rows else None

    def get_many(self, node_ids: Iterable[int]) -> dict[int, NodeRecord]:
        ids = [int(i) for i in node_ids]  # numpy integers have no PostgreSQL type
        out: dict[int, NodeRecord] = {}
        for start in range(0, len(ids), PAGE):
            for row in self._rows(
                f"SELECT {COLUMNS} FROM llmkg_nodes WHERE partition = ANY(%s) "
                "AND id = ANY(%s::bigint[]) AND NOT deleted",
                (self.scope, ids[start : start + PAGE]),
            ):
                out[row[0]] = record_from_row(row)
        return out

    def partition_of(self, node_id: int) -> int | None:
        """The partition of node ``node_id`` (live or deleted), whichever it is; None if
        the database never held it."""
        rows = self._rows("SELECT partition FROM llmkg_nodes WHERE id = %s", (node_id,))
        return int(rows[0][0]) if rows else None

    def find(self, subject: str, predicate: str, object: str) -> NodeRecord | None:
        key = triple_key(subject, predicate, object)
        rows = self._rows(LIVE_BY_TRIPLE, (self.partition, key, subject, predicate, object))
        return record_from_row(rows[0]) if rows else None

    def changes_after(self, seq: int) -> Iterator[Change]:
        """Every node written after ``seq``, in sequence order (for replay), a page at a
        time: no connection is held while the caller works on a page. A node written again
        between pages shows up again, under its newer sequence."""
        while True:
            rows = self._rows(
                f"SELECT {COLUMNS} FROM llmkg_nodes WHERE partition = %s AND seq > %s "
                "ORDER BY seq LIMIT %s",
                (self.partition, seq, PAGE),
            )
            yield from (_change(row) for row in rows)
            if len(rows) < PAGE:
                return
            seq = rows[-1][7]

    def iter_live(self) -> Iterator[tuple[int, str, str, str, float, int]]:
        """``(id, subject, predicate, object, confidence, reads)`` of every live node."""
        after = 0
        while True:
            rows = self._rows(
                "SELECT id, subject, predicate, object, confidence, reads FROM llmkg_nodes "
                "WHERE partition = %s AND id > %s AND NOT deleted ORDER BY id LIMIT %s",
                (self.partition, after, PAGE),
            )
            yield from rows
            if len(rows) < PAGE:
                return
            after = rows[-1][0]

    def most_read(self, n: int) -> list[int]:
        rows = self._rows(
            "SELECT id FROM llmkg_nodes WHERE partition = %s AND NOT deleted "
            "ORDER BY reads DESC, id LIMIT %s",
            (self.partition, n),
        )
        return [r[0] for r in rows]

    def count(self) -> int:
        rows = self._rows(
            "SELECT count(*) FROM llmkg_nodes WHERE partition = %s AND NOT deleted",
            (self.partition,),
        )
        return int(rows[0][0])

    def _read_last_seq(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(
            "SELECT last_seq FROM llmkg_partitions WHERE partition = %s", (self.partition,)
        ).fetchone()
        return int(row[0]) if row else 0

    @property
    def last_seq(self) -> int:
        """The partition's last committed sequence number (by any process)."""
        return self._read(self._read_last_seq)

    def wal_bytes(self) -> int:
        """0: the write-ahead log is the database's, not the store's."""
        return 0

    def check_backup(self) -> None:
        raise BackupUnsupportedError(
            f"the store is the PostgreSQL database {self.target}: back it up with the "
            "database's tools (pg_dump, or base backups and WAL archiving, e.g. "
            "CloudNativePG's backups); llmkg's backup copies SQLite stores only"
        )

    def backup_to(self, dest: object, progress: object = None) -> None:
        self.check_backup()

    def close(self) -> None:
        """Close every connection; later operations raise StoreClosedError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
