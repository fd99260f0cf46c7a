"""The writer thread of a store, with group commit and its fault handling.

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
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from llmkg.store.errors import StoreClosedError, StoreError, StoreTimeoutError, is_fault
from llmkg.store.schema import mark_clean_close

log = logging.getLogger("llmkg.store")

T = TypeVar("T")

MAX_BATCH = 1024
STOP = object()  # queued by close(): the writer finishes what is before it, then stops


class Submit(Protocol):
    """``GroupCommit._submit``'s type, for the mixins of a store that call it."""

    def __call__(self, fn: Callable[..., T], *args: Any) -> T: ...


class GroupCommit:
    """The write half of a store: callers queue ``(operation, args, future)`` and wait; the
    writer thread applies what is queued in one transaction and answers each future. The
    store sets the attributes below and starts ``_write_loop`` on its thread."""

    durability: str
    sync_interval: float
    write_timeout: float
    retry_interval: float
    commits: int
    writes: int
    failed_writes: int
    last_error: str | None
    committed_seq: int
    _seq: int
    _queue: queue.SimpleQueue[Any]
    _submit_lock: threading.Lock
    _closed: bool
    _failure: BaseException | None
    _thread: threading.Thread
    _writer: sqlite3.Connection
    # Operations of at most one write statement, which commit alone (`_apply_alone`).
    _ONE_WRITE: frozenset[Any]
    # Futures of `sync()` calls, answered by the writer's next fsync of the log.
    _sync_wanted: list[Future[None]]

    def _writer_connection(self) -> sqlite3.Connection:
        raise NotImplementedError

    @property
    def _synchronous(self) -> str:
        raise NotImplementedError

    def _submit(self, fn: Callable[..., T], *args: Any) -> T:
        fut: Future[T] = Future()
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
                if self._failure is not None:
                    try:
                        self._recover()
                    except Exception as e:
                        self._fault(e, batch, check=False)  # the recovery was the check
                        continue
                try:
                    if batch:
                        self._apply(self._writer, batch)
                    if self._sync_wanted or (
                        self.durability == "interval"
                        and (stopping or time.monotonic() - last_sync >= self.sync_interval)
                    ):
                        self._sync_and_answer()
                        last_sync = time.monotonic()
                except Exception as e:
                    self._fault(e, batch)
        finally:
            # However the loop ended (stopped, or killed by something unforeseen): whatever
            # is still queued fails now rather than wait for a writer that is gone.
            if not stopping:
                self._failure = self._failure or StoreError("the store's writer stopped")
                log.critical("the store's writer stopped", exc_info=True)
            for fut in [*(item[2] for item in batch), *self._sync_wanted]:
                if not fut.done():
                    fut.set_exception(StoreError("the store's writer stopped"))
            self._fail_queued()
            with contextlib.suppress(sqlite3.Error):
                if stopping and self._failure is None:
                    mark_clean_close(self._writer)
                self._writer.close()

    def _take(self, timeout: float | None) -> tuple[list[Any], bool]:
        """The queued writes (at most ``MAX_BATCH``; waits up to ``timeout`` for the first),
        without those their callers withdrew, and whether the stop sentinel came."""
        batch: list[Any] = []
        try:
            item = self._queue.get(timeout=timeout)
            while True:
                if item is STOP:
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
            if item is not STOP and item[2].set_running_or_notify_cancel():
                item[2].set_exception(StoreError("the store's writer stopped"))

    def _fault(self, error: Exception, batch: list[Any], check: bool = True) -> None:
        """A commit, a sync or a recovery failed: the connection is checked (reopened if
        need be; not after a failed recovery, which was that check), then every write of
        ``batch`` not yet answered fails; in that order, so that a caller who sees the
        error also sees whether the store is failed."""
        self.last_error = f"{type(error).__name__}: {error}"
        if not check:
            self._failure = error
        else:
            log.error("store fault; checking the connection", exc_info=error)
            try:
                self._recover()
            except Exception as e:
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
                results = self._apply_each(conn, batch)
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

    def _apply_each(
        self, conn: sqlite3.Connection, batch: list[Any]
    ) -> list[tuple[Future[Any], bool, Any]]:
        """Run each operation of ``batch`` in the open transaction. At first without a
        savepoint each: two statements fewer per operation, and each statement releases the
        GIL, which the writer must win back. If an operation fails (rare: they check what
        they change), the batch is rolled back and run again with a savepoint around each,
        so that only the failed one is left out. An operation changes nothing outside the
        database but the sequence counter and the list of ``sync()`` calls, which the
        rollback restores too."""
        seq, syncs = self._seq, len(self._sync_wanted)
        values: list[tuple[Future[Any], bool, Any]] = []
        try:
            for fn, args, fut in batch:
                values.append((fut, True, fn(conn, *args)))
            return values
        except Exception as e:
            if is_fault(e):
                raise
        conn.execute("ROLLBACK")
        self._seq = seq
        del self._sync_wanted[syncs:]
        conn.execute("BEGIN IMMEDIATE")
        values = []
        for fn, args, fut in batch:
            conn.execute("SAVEPOINT op")
            try:
                value = fn(conn, *args)
                conn.execute("RELEASE op")
                values.append((fut, True, value))
            except Exception as e:
                if is_fault(e):
                    raise
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                values.append((fut, False, e))
        return values

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

    def _sync_and_answer(self) -> None:
        """Fsync the log, then answer the `sync()` calls waiting for it."""
        wanted, self._sync_wanted = self._sync_wanted, []
        try:
            self._sync(self._writer)
        except Exception as e:
            for fut in wanted:
                error = StoreError(f"the store could not sync: {e}")
                error.__cause__ = e
                fut.set_exception(error)
            raise
        for fut in wanted:
            fut.set_result(None)

    def _sync(self, conn: sqlite3.Connection) -> None:
        """One FULL commit: it fsyncs the WAL, and with it every NORMAL commit before it.
        Also the probe of a connection after a fault."""
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('last_seq', ?)", (self._seq,))
        conn.execute("COMMIT")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
