"""The SQLite store, with group commit.

One writer thread owns the write connection. Callers queue their writes and wait; the
writer takes everything queued, applies it in one transaction (each write in its own
savepoint, so one failure does not undo the others) and commits once, so concurrent
writers share one fsync. A write returns only after its transaction committed:

- ``durability="fsync"`` (default): ``synchronous=FULL`` — every commit is fsynced, and a
  returned write survives ``kill -9`` and power loss.
- ``durability="interval"``: ``synchronous=NORMAL`` plus an fsync of the log every
  ``sync_interval`` seconds. A returned write survives ``kill -9`` of the process (it is in
  the OS), but a power loss may drop the writes of the last ``sync_interval`` seconds.

Reads use one connection per thread and run beside the writer (WAL readers never block).
The writer thread and what it does when the database fails: ``writer.py``; the graph's
reads: ``sqlitegraph.py``.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from llmkg.store.errors import StoreClosedError
from llmkg.store.failures import storage_failure
from llmkg.store.records import MAX_DEPTH, Change, NodeRecord, record_from_row
from llmkg.store.schema import StoreCorruptError, is_corruption, open_format
from llmkg.store.sqlitebulk import BulkWrites
from llmkg.store.sqlitegraph import GraphReads
from llmkg.store.writer import STOP, GroupCommit

DB_FILE = "llmkg.sqlite3"
JOURNAL_SIZE_LIMIT = 16 * 2**20

COLUMNS = "id, subject, predicate, object, confidence, embedding, parent, seq, reads, deleted"
SELECT_LIVE = f"SELECT {COLUMNS} FROM nodes WHERE deleted=0"
BY_TRIPLE = f"{SELECT_LIVE} AND subject=? AND predicate=? AND object=?"
# A new row, unless a live row holds the triple (the unique index on live triples) or
# the parent named is not live: then none.
INSERT_NEW = """INSERT INTO nodes (subject, predicate, object, confidence, embedding, parent, seq)
    SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7
    WHERE ?6 IS NULL OR EXISTS (SELECT 1 FROM nodes WHERE id = ?6 AND deleted = 0)
    ON CONFLICT DO NOTHING RETURNING id"""
# The last sequence number given out: the ``last_seq`` row, written by every transaction
# of several operations, or the seq of the newest row, which an operation committed alone
# (without that row) carries.
LAST_SEQ = """SELECT max(
    coalesce((SELECT value FROM meta WHERE key = 'last_seq'), 0),
    coalesce((SELECT max(seq) FROM nodes), 0))"""


class SqliteStore(GraphReads, BulkWrites, GroupCommit):
    """Facts, full vectors and parent links in ``directory/llmkg.sqlite3``. ``migrate``:
    whether opening may upgrade an older format (``schema.py``)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        durability: str = "fsync",
        sync_interval: float = 1.0,
        write_timeout: float = 30.0,
        retry_interval: float = 1.0,
        migrate: bool = True,
    ) -> None:
        if durability not in ("fsync", "interval"):
            raise ValueError(f"durability must be 'fsync' or 'interval', got {durability!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / DB_FILE
        self.durability = durability
        self.sync_interval = sync_interval
        self.write_timeout = write_timeout
        self.retry_interval = retry_interval
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submit_lock = threading.Lock()
        self._closed = False
        # Futures of `sync()` calls, resolved by the writer's next fsync of the log.
        self._sync_wanted = []
        self.commits = 0
        self.writes = 0
        self.failed_writes = 0  # writes refused by a fault of the store (not by their op)
        self.last_error: str | None = None  # the last fault, for stats and readiness
        # Set while the writer cannot commit (a probe and a reopen failed): writes fail fast.
        self._failure: BaseException | None = None

        try:
            self._writer = self._writer_connection()
        except sqlite3.DatabaseError as e:
            if is_corruption(e):
                raise StoreCorruptError(
                    f"{self.path} is not a readable llmkg store ({e})"
                ) from None
            raise
        try:
            self.store_id = open_format(self._writer, self.path, migrate)
        except BaseException:
            self._writer.close()
            raise
        self._seq = self._writer.execute(LAST_SEQ).fetchone()[0]
        self.committed_seq = self._seq
        self._thread = threading.Thread(
            target=self._write_loop, name="llmkg-store-writer", daemon=True
        )
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def _writer_connection(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        # SQLite resets its log after each automatic checkpoint (about 4 MB), but the file
        # keeps its high-water size (a reader pinning the log can make it large) unless
        # a limit tells SQLite to truncate it on reset.
        conn.execute(f"PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT}")
        return conn

    @property
    def _synchronous(self) -> str:
        return "FULL" if self.durability == "fsync" else "NORMAL"

    # ---- writes (the operations run on the writer thread: see GroupCommit) -------------

    def _op_want_sync(self, conn: sqlite3.Connection, done: Future[None]) -> None:
        self._sync_wanted.append(done)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _op_insert(
        self,
        conn: sqlite3.Connection,
        s: str,
        p: str,
        o: str,
        confidence: float,
        blob: bytes,
        parent: int | None,
        merge: Callable[[float, float], float],
    ) -> tuple[NodeRecord, bool]:
        # A new triple under a live parent (the usual case: the engine stores triples it
        # does not know, under a node it just found) costs one statement: every statement
        # releases the GIL, and under load the writer's wait to win it back costs more
        # than the statement. fetchall: the statement must run to its end, or a write
        # made outside a transaction would not commit yet.
        seq = self._next_seq()
        values = (s, p, o, confidence, blob, parent, seq)
        inserted = conn.execute(INSERT_NEW, values).fetchall()
        if inserted:
            return record_from_row(
                (inserted[0][0], s, p, o, confidence, blob, parent, seq, 0, 0)
            ), True
        self._seq -= 1  # not used: sequences stay without gaps
        row = conn.execute(BY_TRIPLE, (s, p, o)).fetchone()
        if row is not None:
            new_conf = merge(row[4], confidence)
            if new_conf != row[4]:
                seq = self._next_seq()
                conn.execute(
                    "UPDATE nodes SET confidence=?, seq=? WHERE id=?", (new_conf, seq, row[0])
                )
                row = (*row[:4], new_conf, row[5], row[6], seq, *row[8:])
            return record_from_row(row), False
        # The parent was deleted after the allocation chose it.
        parent = self._live_ancestor(conn, parent) if parent is not None else None
        seq = self._next_seq()
        cur = conn.execute(
            "INSERT INTO nodes (subject, predicate, object, confidence, embedding, parent, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s, p, o, confidence, blob, parent, seq),
        )
        node_id = cur.lastrowid
        assert node_id is not None
        return record_from_row((node_id, s, p, o, confidence, blob, parent, seq, 0, 0)), True

    def _op_raise_confidence(
        self, conn: sqlite3.Connection, node_id: int, confidence: float
    ) -> NodeRecord | None:
        row = conn.execute(f"{SELECT_LIVE} AND id=?", (node_id,)).fetchone()
        if row is None:
            return None
        if confidence > row[4]:
            seq = self._next_seq()
            conn.execute(
                "UPDATE nodes SET confidence=?, seq=? WHERE id=?", (confidence, seq, node_id)
            )
            row = (*row[:4], confidence, row[5], row[6], seq, *row[8:])
        return record_from_row(row)

    @staticmethod
    def _live_ancestor(conn: sqlite3.Connection, node_id: int) -> int | None:
        """``node_id`` if live, else the parent its children got when it was deleted
        (a tombstone keeps its parent column): the allocation chose its parent before a
        delete that committed first."""
        current: int | None = node_id
        for _ in range(MAX_DEPTH):
            if current is None:
                return None
            row = conn.execute("SELECT deleted, parent FROM nodes WHERE id=?", (current,))
            found = row.fetchone()
            if found is None:
                return None
            if not found[0]:
                return current
            current = found[1]
        return None

    def _op_detach(self, conn: sqlite3.Connection, node_id: int) -> list[int] | None:
        row = conn.execute("SELECT parent FROM nodes WHERE id=? AND deleted=0", (node_id,))
        found = row.fetchone()
        if found is None:
            return None
        conn.execute(
            "UPDATE nodes SET deleted=1, embedding=NULL, seq=? WHERE id=?",
            (self._next_seq(), node_id),
        )
        children = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM nodes WHERE parent=? AND deleted=0 ORDER BY id", (node_id,)
            )
        ]
        # A sequence each: a reader of changes_after sees every row that changed.
        conn.executemany(
            "UPDATE nodes SET parent=?, seq=? WHERE id=?",
            [(found[0], self._next_seq(), child) for child in children],
        )
        return children

    # Operations that make at most one write statement: alone in a batch, each runs as
    # its own transaction (`_apply_alone`). The functions themselves, so that a rename
    # cannot quietly turn the fast path off. Not a delete: it re-parents the children
    # in the same transaction.
    _ONE_WRITE = frozenset({_op_insert, _op_raise_confidence})

    def _op_add_reads(self, conn: sqlite3.Connection, counts: list[tuple[int, int]]) -> None:
        conn.executemany(
            "UPDATE nodes SET reads = reads + ? WHERE id = ?", [(n, i) for i, n in counts]
        )

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
        """Store a fact, or find it: ``(record, created)``. A triple already stored keeps its
        node; its confidence becomes ``merge(old, new)``. Returns once durable."""
        blob = np.ascontiguousarray(embedding, dtype="<f4").tobytes()
        return self._submit(
            self._op_insert, subject, predicate, object, confidence, blob, parent, merge
        )

    def raise_confidence(self, node_id: int, confidence: float) -> NodeRecord | None:
        """The live node ``node_id`` with its confidence raised to ``confidence`` if that is
        higher; None if the node is not live (deleted meanwhile). Never creates a row."""
        return self._submit(self._op_raise_confidence, node_id, confidence)

    def sync(self) -> None:
        """Return once every write committed so far is on disk. With ``durability="fsync"``
        each already is; with ``"interval"`` this fsyncs the log now."""
        if self.durability == "fsync":
            return
        done: Future[None] = Future()
        self._submit(self._op_want_sync, done)
        done.result()

    def delete(self, node_id: int) -> bool:
        """Delete a node; False if it was not there. Returns once durable."""
        return self.detach(node_id) is not None

    def detach(self, node_id: int) -> list[int] | None:
        """Delete a node and re-parent its children in one transaction (``Store``); the
        children moved, or None if the node was not live. Returns once durable."""
        return self._submit(self._op_detach, node_id)

    def add_reads(self, counts: dict[int, int]) -> None:
        """Add to the read counters of nodes (kept to find the most-read nodes)."""
        if counts:
            self._submit(self._op_add_reads, list(counts.items()))

    # ---- reads (any thread) ------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreClosedError("the store is closed")
            conn = self._connect()
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def get(self, node_id: int) -> NodeRecord | None:
        row = (
            self._reader()
            .execute(f"SELECT {COLUMNS} FROM nodes WHERE id=? AND deleted=0", (node_id,))
            .fetchone()
        )
        return record_from_row(row) if row else None

    def get_many(self, node_ids: Iterable[int]) -> dict[int, NodeRecord]:
        ids = list(node_ids)
        out: dict[int, NodeRecord] = {}
        conn = self._reader()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT {COLUMNS} FROM nodes WHERE deleted=0 AND id IN ({marks})", chunk
            ):
                out[row[0]] = record_from_row(row)
        return out

    def find(self, subject: str, predicate: str, object: str) -> NodeRecord | None:
        row = self._reader().execute(BY_TRIPLE, (subject, predicate, object)).fetchone()
        return record_from_row(row) if row else None

    def changes_after(self, seq: int) -> Iterator[Change]:
        """Every node written after ``seq``, in sequence order (for replay)."""
        conn = self._connect()
        try:
            for row in conn.execute(
                f"SELECT {COLUMNS} FROM nodes WHERE seq > ? ORDER BY seq", (seq,)
            ):
                yield Change(row[7], row[0], None if row[9] else record_from_row(row))
        finally:
            conn.close()

    def iter_live(self) -> Iterator[tuple[int, str, str, str, float, int]]:
        """``(id, subject, predicate, object, confidence, reads)`` of every live node."""
        conn = self._connect()
        try:
            columns = "id, subject, predicate, object, confidence, reads"
            yield from conn.execute(f"SELECT {columns} FROM nodes WHERE deleted=0")
        finally:
            conn.close()

    def most_read(self, n: int) -> list[int]:
        rows = self._reader().execute(
            "SELECT id FROM nodes WHERE deleted=0 ORDER BY reads DESC LIMIT ?", (n,)
        )
        return [r[0] for r in rows]

    def count(self) -> int:
        query = "SELECT COUNT(*) FROM nodes WHERE deleted=0"
        (count,) = self._reader().execute(query).fetchone()
        return int(count)

    @property
    def last_seq(self) -> int:
        """The last sequence number handed out (committed or about to be)."""
        return self._seq

    def health(self) -> tuple[bool, str]:
        """Whether the store takes writes (its writer runs and is not failed) and reads (a
        cheap query answers), with a line saying why not. A full disk leaves it healthy:
        reads are served as ever and writes are refused (507) until space returns, and
        taking the server out of rotation for it would stop the reads too."""
        if not self._thread.is_alive():
            return False, "the writer has stopped"
        if self._failure is not None and storage_failure(self._failure) != "full":
            return False, f"cannot commit: {self.last_error}"
        try:
            self._reader().execute("SELECT max(seq) FROM nodes").fetchone()
        except sqlite3.Error as e:
            return False, f"cannot read: {e}"
        if self._failure is not None:
            return True, f"disk full: writes refused until space returns ({self.last_error})"
        return True, f"sequence {self.committed_seq}, {self.failed_writes} writes failed"

    def wal_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return wal.stat().st_size if wal.exists() else 0

    def check_backup(self) -> None:
        """An SQLite store can always be copied by ``backup_to``."""

    def close(self) -> None:
        """Finish the queued writes, then close every connection."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(STOP)
        self._thread.join()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
