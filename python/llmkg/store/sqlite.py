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

Faults: a write whose commit fails (I/O error, full disk) raises ``StoreError``; the writer
then checks its connection with a probe commit, reopens it if the probe fails, and while
neither works the store is *failed*: every write raises ``StoreError`` at once (no caller
waits on a store that cannot commit) and the writer retries every ``retry_interval``
seconds. A write waits at most ``write_timeout`` seconds (``StoreTimeoutError``). Nothing
is acknowledged that did not commit.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from llmkg.store.errors import StoreClosedError, StoreError, StoreTimeoutError, is_fault
from llmkg.store.records import Change, NodeRecord

DB_FILE = "llmkg.sqlite3"
MAX_BATCH = 1024
JOURNAL_SIZE_LIMIT = 16 * 2**20

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: a deleted id is never reused
    subject TEXT NOT NULL,
    predicate TEXT NOT NULL,
    object TEXT NOT NULL,
    confidence REAL NOT NULL,
    embedding BLOB,                        -- float32 little-endian; NULL once deleted
    parent INTEGER,
    seq INTEGER NOT NULL,
    reads INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS nodes_triple ON nodes(subject, predicate, object)
    WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS nodes_seq ON nodes(seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

COLUMNS = "id, subject, predicate, object, confidence, embedding, parent, seq, reads, deleted"
SELECT_LIVE = f"SELECT {COLUMNS} FROM nodes WHERE deleted=0"
BY_TRIPLE = f"{SELECT_LIVE} AND subject=? AND predicate=? AND object=?"


# The last sequence number given out: the ``last_seq`` row, written by every transaction
# of several operations, or the seq of the newest row, which an operation committed alone
# (without that row) carries.
LAST_SEQ = """SELECT max(
    coalesce((SELECT value FROM meta WHERE key = 'last_seq'), 0),
    coalesce((SELECT max(seq) FROM nodes), 0))"""

_STOP = object()  # queued by close(): the writer finishes what is before it, then stops

log = logging.getLogger("llmkg.store")


def _record(row: tuple[Any, ...]) -> NodeRecord:
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


class SqliteStore:
    """Facts, full vectors and parent links in ``directory/llmkg.sqlite3``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        durability: str = "fsync",
        sync_interval: float = 1.0,
        write_timeout: float = 30.0,
        retry_interval: float = 1.0,
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
        self.commits = 0
        self.writes = 0
        self.failed_writes = 0  # writes refused by a fault of the store (not by their op)
        self.last_error: str | None = None  # the last fault, for stats and readiness
        # Set while the writer cannot commit (a probe and a reopen failed): writes fail fast.
        self._failure: BaseException | None = None

        self._writer = self._writer_connection()
        self._writer.executescript(SCHEMA)
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

    # ---- writes (run on the writer thread) --------------------------------------------

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        fut: Future[Any] = Future()
        # Under the lock, so that nothing is queued behind the writer's stop sentinel.
        with self._submit_lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            self._raise_if_failed()
            self._queue.put((fn, args, fut))
        try:
            return fut.result(timeout=self.write_timeout)
        except concurrent.futures.TimeoutError:
            # Not yet taken by the writer: withdrawn, so it will never commit.
            if fut.cancel():
                raise StoreTimeoutError(
                    f"the store did not take the write within {self.write_timeout:g}s; "
                    "it was not written"
                ) from None
            raise StoreTimeoutError(
                f"the store did not commit the write within {self.write_timeout:g}s; it "
                "may still commit (writes are idempotent: retrying is safe)"
            ) from None

    def _raise_if_failed(self) -> None:
        failure = self._failure
        if failure is not None:
            raise StoreError(f"the store cannot write: {failure}") from failure
        if not self._thread.is_alive():
            raise StoreError("the store's writer has stopped")

    def _write_loop(self) -> None:
        last_sync = time.monotonic()
        stopping = False
        batch: list[Any] = []
        try:
            while not stopping:
                if self._failure is not None:
                    timeout: float | None = self.retry_interval
                elif self.durability == "interval":
                    timeout = self.sync_interval
                else:
                    timeout = None
                batch, stopping = self._take(timeout)
                try:
                    if self._failure is not None:
                        self._recover()
                    if batch:
                        self._apply(self._writer, batch)
                    if self.durability == "interval" and (
                        stopping or time.monotonic() - last_sync >= self.sync_interval
                    ):
                        self._sync(self._writer)
                        last_sync = time.monotonic()
                except Exception as e:
                    self._fault(e, batch)
        finally:
            # However the loop ended (stopped, or killed by something unforeseen): whatever
            # is still queued fails now rather than wait for a writer that is gone.
            if not stopping:
                self._failure = self._failure or StoreError("the store's writer stopped")
                log.critical("the store's writer stopped", exc_info=True)
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_exception(StoreError("the store's writer stopped"))
            self._fail_queued()
            with contextlib.suppress(sqlite3.Error):
                self._writer.close()

    def _take(self, timeout: float | None) -> tuple[list[Any], bool]:
        """The queued writes (at most ``MAX_BATCH``; waits up to ``timeout`` for the first),
        without those their callers withdrew, and whether the stop sentinel came."""
        batch = []
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if item is _STOP:
                    return batch, True
                if item[2].set_running_or_notify_cancel():
                    batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                item = self._queue.get_nowait()
        except queue.Empty:
            pass
        return batch, False

    def _fail_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP and item[2].set_running_or_notify_cancel():
                item[2].set_exception(StoreError("the store's writer stopped"))

    def _fault(self, error: Exception, batch: list[Any]) -> None:
        """A commit, a sync or a recovery failed: the connection is checked (reopened if
        need be), then every write of ``batch`` not yet answered fails; in that order, so
        that a caller who sees the error also sees whether the store is failed."""
        self.last_error = f"{type(error).__name__}: {error}"
        was_failed = self._failure is not None
        if not was_failed:
            log.error("store fault; checking the connection", exc_info=error)
        try:
            self._recover()
        except Exception as e:
            if not was_failed:
                log.error("the store cannot commit; writes fail until it can: %s", e)
            self._failure = e
            self.last_error = f"{type(e).__name__}: {e}"
        for _, _, fut in batch:
            if not fut.done():
                self.failed_writes += 1
                store_error = StoreError(f"the store could not commit: {error}")
                store_error.__cause__ = error
                fut.set_exception(store_error)

    def _recover(self) -> None:
        """A probe commit on the connection; if it fails, the same on a new connection.
        Raises if neither commits."""
        try:
            self._sync(self._writer)
        except Exception:
            with contextlib.suppress(sqlite3.Error):
                if self._writer.in_transaction:
                    self._writer.execute("ROLLBACK")
            with contextlib.suppress(sqlite3.Error):
                self._writer.close()
            self._writer = self._writer_connection()
            self._sync(self._writer)
        if self._failure is not None:
            log.warning("the store commits again")
        self._failure = None

    def _apply(self, conn: sqlite3.Connection, batch: list[Any]) -> None:
        """Commit ``batch``. A failure of the database itself (not of one operation) fails
        every write of the batch and is raised, for the loop to check the connection."""
        if len(batch) == 1 and getattr(batch[0][0], "__func__", None) in self._ONE_WRITE:
            self._apply_alone(conn, batch[0])
            return
        results: list[tuple[Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            if len(batch) == 1:
                # Alone, an operation needs no savepoint: if it fails, nothing is
                # committed.
                fn, args, fut = batch[0]
                try:
                    results.append((fut, True, fn(conn, *args)))
                except Exception as e:
                    if is_fault(e):
                        raise
                    conn.execute("ROLLBACK")
                    fut.set_exception(e)
                    return
            else:
                for fn, args, fut in batch:
                    conn.execute("SAVEPOINT op")
                    try:
                        value = fn(conn, *args)
                        conn.execute("RELEASE op")
                        results.append((fut, True, value))
                    except Exception as e:
                        if is_fault(e):
                            raise
                        conn.execute("ROLLBACK TO op")
                        conn.execute("RELEASE op")
                        results.append((fut, False, e))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (self._seq,))
            conn.execute("COMMIT")
        except Exception:  # the commit itself failed: nothing of the batch is durable
            # Sequence numbers are not reused after a failed commit (gaps are harmless),
            # so a checkpoint tagged before the failure never hides a later write. A failed
            # rollback leaves the connection to the recovery that follows.
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise
        self.commits += 1
        self.writes += len(batch)
        self.committed_seq = self._seq
        for fut, ok, value in results:
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(value)

    def _apply_alone(self, conn: sqlite3.Connection, item: Any) -> None:
        """One operation of at most one write statement, in autocommit mode: the statement
        commits itself. No BEGIN, COMMIT or ``last_seq`` row: three fewer statements, each
        of which releases the GIL and must win it back, which under load costs more than
        the statement. The row written carries its seq, which ``LAST_SEQ`` reads back."""
        fn, args, fut = item
        try:
            value = fn(conn, *args)
        except Exception as e:
            if is_fault(e):  # the statement's own commit failed
                raise
            fut.set_exception(e)
            return
        self.commits += 1
        self.writes += 1
        self.committed_seq = self._seq
        fut.set_result(value)

    def _sync(self, conn: sqlite3.Connection) -> None:
        """One FULL commit: it fsyncs the WAL, and with it every NORMAL commit before it.
        Also the probe of a connection after a fault."""
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (self._seq,))
        conn.execute("COMMIT")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")

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
        row = conn.execute(BY_TRIPLE, (s, p, o)).fetchone()
        if row is not None:
            new_conf = merge(row[4], confidence)
            if new_conf != row[4]:
                seq = self._next_seq()
                conn.execute(
                    "UPDATE nodes SET confidence=?, seq=? WHERE id=?", (new_conf, seq, row[0])
                )
                row = (*row[:4], new_conf, row[5], row[6], seq, *row[8:])
            return _record(row), False
        seq = self._next_seq()
        cur = conn.execute(
            "INSERT INTO nodes (subject, predicate, object, confidence, embedding, parent, seq) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s, p, o, confidence, blob, parent, seq),
        )
        node_id = cur.lastrowid
        assert node_id is not None
        return _record((node_id, s, p, o, confidence, blob, parent, seq, 0, 0)), True

    def _op_delete(self, conn: sqlite3.Connection, node_id: int) -> bool:
        seq = self._next_seq()
        cur = conn.execute(
            "UPDATE nodes SET deleted=1, embedding=NULL, seq=? WHERE id=? AND deleted=0",
            (seq, node_id),
        )
        if cur.rowcount == 0:
            self._seq -= 1
            return False
        return True

    # Operations that make at most one write statement: alone in a batch, each runs as
    # its own transaction (`_apply_alone`). The functions themselves, so that a rename
    # cannot quietly turn the fast path off.
    _ONE_WRITE = frozenset({_op_insert, _op_delete})

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

    def delete(self, node_id: int) -> bool:
        """Delete a node; False if it was not there. Returns once durable."""
        return self._submit(self._op_delete, node_id)

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
        return _record(row) if row else None

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
                out[row[0]] = _record(row)
        return out

    def find(self, subject: str, predicate: str, object: str) -> NodeRecord | None:
        row = self._reader().execute(BY_TRIPLE, (subject, predicate, object)).fetchone()
        return _record(row) if row else None

    def changes_after(self, seq: int) -> Iterator[Change]:
        """Every node written after ``seq``, in sequence order (for replay)."""
        conn = self._connect()
        try:
            for row in conn.execute(
                f"SELECT {COLUMNS} FROM nodes WHERE seq > ? ORDER BY seq", (seq,)
            ):
                yield Change(row[7], row[0], None if row[9] else _record(row))
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
        return self._reader().execute("SELECT COUNT(*) FROM nodes WHERE deleted=0").fetchone()[0]

    @property
    def last_seq(self) -> int:
        """The last sequence number handed out (committed or about to be)."""
        return self._seq

    def health(self) -> tuple[bool, str]:
        """Whether the store takes writes (its writer runs and is not failed) and reads (a
        cheap query answers), with a line saying why not."""
        if not self._thread.is_alive():
            return False, "the writer has stopped"
        if self._failure is not None:
            return False, f"cannot commit: {self.last_error}"
        try:
            self._reader().execute("SELECT max(seq) FROM nodes").fetchone()
        except sqlite3.Error as e:
            return False, f"cannot read: {e}"
        return True, f"sequence {self.committed_seq}, {self.failed_writes} writes failed"

    def wal_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return wal.stat().st_size if wal.exists() else 0

    def backup_to(self, dest: str | os.PathLike[str]) -> None:
        """A consistent copy of the database (SQLite's online backup) at ``dest``."""
        target = sqlite3.connect(dest)
        try:
            self._reader().backup(target)
        finally:
            target.close()

    def close(self) -> None:
        """Finish the queued writes, then close every connection."""
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
