"""A pool of connections to one PostgreSQL database, as the store uses them: bounded
waits, keepalives, a statement timeout, lost connections told apart from other errors
(a read retries once on a fresh one), and messages that name the server but never the
password."""

from __future__ import annotations

import math
import select
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from llmkg.store.errors import StoreClosedError, StoreUnavailableError
from llmkg.store.schema import StoreOpenError

T = TypeVar("T")

# Errors after which the connection is gone: the server is unreachable, shut down, or
# dropped it (SQLSTATE class 08, and 57P01-57P03); psycopg gives no SQLSTATE to a
# connection that broke on the client side.
LOST_STATES = ("57P01", "57P02", "57P03")


class _ConnectionLostError(StoreUnavailableError):
    """A connection broke under a statement; the pool replaces it, so a read may retry."""


def describe(dsn: str) -> str:
    """``user@host:port/dbname`` of a connection string: what messages may show of it
    (never the password). Raises StoreOpenError, without the text, if it does not parse."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        # The parser's message quotes the text around the error, which may be the password.
        raise StoreOpenError("the PostgreSQL connection string does not parse") from None
    host = str(parts.get("host") or parts.get("hostaddr") or "localhost")
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname') or ''}"


def _lost(e: psycopg.OperationalError) -> bool:
    state = e.sqlstate
    return state is None or state.startswith("08") or state in LOST_STATES


def _closed_by_server(conn: psycopg.Connection[Any]) -> bool:
    """Whether a pooled, idle connection was closed by the server since it was last used
    (a restart, a failover). An idle connection has nothing to read unless the server
    has spoken since, which is almost always its last words or the end of the stream:
    only then does a round trip tell, so a healthy connection costs one poll."""
    if conn.closed:
        return True
    poller = select.poll()  # not select(): a busy server's descriptors pass FD_SETSIZE
    poller.register(conn.fileno(), select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        conn.execute("")
    except psycopg.Error:
        return True
    return False


class Connections:
    """``connect_timeout`` (seconds) bounds connecting and waiting for a pooled connection:
    past it an operation raises ``StoreUnavailableError``. ``statement_timeout`` (seconds,
    0: none) bounds each statement on the server. The pool is open on return."""

    def __init__(
        self, dsn: str, pool_size: int, connect_timeout: float, statement_timeout: float
    ) -> None:
        if pool_size < 1 or connect_timeout <= 0 or statement_timeout < 0:
            raise ValueError("pool_size >= 1, connect_timeout > 0 and statement_timeout >= 0")
        self.target = describe(dsn)
        self.timeout = connect_timeout
        self._statement_ms = int(statement_timeout * 1000)
        self._lock = threading.Lock()
        self._closed = False
        # Operations refused because the database could not be reached, and the last reason.
        self.failed_writes = 0
        self.last_error: str | None = None
        seconds = max(1, math.ceil(connect_timeout))
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=pool_size,
            timeout=connect_timeout,
            # The pool retries a lost connection with a doubling delay: after a minute
            # without a primary its next try could be a minute away, long after a standby
            # was promoted. Given up after this, the next request starts a fresh try.
            reconnect_timeout=connect_timeout,
            name="llmkg-store",
            open=False,
            configure=self._configure,
            kwargs={
                "autocommit": True,  # reads are single statements; writes open transactions
                "connect_timeout": seconds,
                # A server that vanishes without closing its sockets (a dead machine) is
                # noticed by TCP within a few timeouts, not after the kernel's 2 hours.
                "keepalives": 1,
                "keepalives_idle": seconds,
                "keepalives_interval": seconds,
                "keepalives_count": 3,
                "tcp_user_timeout": seconds * 3000,
            },
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except PoolTimeout:
            self._pool.close()
            raise StoreUnavailableError(
                f"the PostgreSQL store at {self.target} is unreachable or refuses "
                f"connections (the log says why): none within {connect_timeout:g}s"
            ) from None

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false)", (str(self._statement_ms),)
        )

    # ---- connections -------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise StoreClosedError("the store is closed")
        try:
            conn = self._live_connection()
            try:
                with conn:
                    yield conn
            finally:
                self._pool.putconn(conn)
        except PoolTimeout:
            self._unavailable(f"no connection within {self.timeout:g}s")
            raise StoreUnavailableError(
                f"the PostgreSQL store at {self.target} is unavailable: no connection "
                f"within {self.timeout:g}s"
            ) from None
        except PoolClosed:
            raise StoreClosedError("the store is closed") from None
        except psycopg.OperationalError as e:
            if not _lost(e):
                raise
            self._unavailable(str(e))
            raise _ConnectionLostError(
                f"the PostgreSQL store at {self.target} is unavailable: {e}"
            ) from None

    def _live_connection(self) -> psycopg.Connection[Any]:
        # After a restart or a failover every idle connection of the pool is dead: handed
        # out in turn, each would fail one call. Returned broken, the pool replaces it.
        deadline = time.monotonic() + self.timeout
        while True:
            conn = self._pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
            if not _closed_by_server(conn):
                return conn
            self._pool.putconn(conn)

    def _unavailable(self, reason: str) -> None:
        with self._lock:
            self.failed_writes += 1
            self.last_error = reason

    def _read(self, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        # Once: a connection the server dropped (a restart, a failover) fails its next
        # statement, and the pool replaces it. A write is not retried: it may have
        # committed before the connection broke.
        try:
            with self._connection() as conn:
                return fn(conn)
        except _ConnectionLostError:
            with self._connection() as conn:
                return fn(conn)

    def _rows(self, query: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return self._read(lambda conn: conn.execute(query, params).fetchall())
