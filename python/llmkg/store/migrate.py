"""Schema upgrades as an explicit step, and the copy of an SQLite store into PostgreSQL
(``llmkg-server migrate``).

``upgrade`` opens the configured store allowing it to migrate, and says from which
version to which.

``copy_sqlite`` moves an embedded store to PostgreSQL with everything the engine relies
on: node ids, sequence numbers, tombstones, read counters, parents, confidences and the
vectors' bytes. The source is opened read-only and read in one read transaction (a
consistent image), without creating a file beside it; a store of an older format, or one
left with a write-ahead log (an unclean end), is first copied to a temporary directory and
migrated there, never in place. A server running on the store refuses the copy: stop it
first (a cut-over), so that no write is left behind. The target
must be empty (no node row in any partition, every sequence counter at 0); the rows go
into the configured partition with COPY, its counter is set to the source's last
sequence and the identity column past the largest id the source ever gave out, and all
of it commits in one transaction: a failed or interrupted copy leaves the target as it
was, and no process sees part of it.

The target keeps its own ``store_id`` (the one given when its tables were created): a
migrated database is a new store, so that index snapshots of the SQLite data directory,
whose sequence numbers may have moved on in the SQLite store after the copy, are never
loaded against it. The first engine on it rebuilds its index from the database. The
source's id and last sequence are recorded in ``llmkg_meta`` (``migrated_from``).
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from llmkg.progress import ProgressFactory, log_lines
from llmkg.store.errors import StoreUnavailableError
from llmkg.store.pgconn import describe
from llmkg.store.placement import triple_key
from llmkg.store.schema import (
    FORMAT_VERSION,
    StoreOpenError,
    StoreVersionError,
    read_format,
    read_only,
)

if TYPE_CHECKING:
    from llmkg.engine.config import EngineConfig

# Columns read from SQLite, in the order of the COPY below.
SOURCE_COLUMNS = (
    "id, subject, predicate, object, confidence, embedding, parent, seq, reads, deleted"
)
TARGET_COLUMNS = (
    "partition, id, triple_key, subject, predicate, object, confidence, embedding, parent, "
    "seq, reads, deleted"
)
COPY_TYPES = [
    "int4",
    "int8",
    "bytea",
    "text",
    "text",
    "text",
    "float8",
    "bytea",
    "int8",
    "int8",
    "int8",
    "bool",
]


log = logging.getLogger("llmkg.store")


class TargetNotEmptyError(RuntimeError):
    """The PostgreSQL database already holds facts or sequence numbers: nothing copied."""


Connection = psycopg.Connection[Any]


@contextmanager
def connect(dsn: str, timeout: float) -> Iterator[tuple[Connection, str]]:
    """One autocommit connection (no statement timeout: a copy may take long), and the
    database's name for messages (without the password)."""
    target = describe(dsn)
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=max(1, math.ceil(timeout)))
    except psycopg.OperationalError as e:
        raise StoreUnavailableError(
            f"the PostgreSQL store at {target} is unreachable: {e}"
        ) from None
    with conn:
        yield conn, target


def upgrade(config: EngineConfig) -> dict[str, Any]:
    """Open the configured store allowing migrations, and close it: ``{"backend",
    "from_version", "to_version"}`` (``from_version`` None: the store was created).
    Raises ``StoreVersionError`` for a store newer than this llmkg."""
    if config.store_backend == "postgresql":
        from llmkg.store.pgschema import SCHEMA_VERSION, open_schema, read_version

        with connect(config.postgres_dsn, config.postgres_connect_timeout) as (conn, target):
            before = read_version(conn)
            open_schema(conn, target, config.partition, True, config.partition_count)
        return {"backend": "postgresql", "from_version": before, "to_version": SCHEMA_VERSION}
    from llmkg.store.sqlite import DB_FILE, SqliteStore

    directory = Path(config.data_directory)
    directory.mkdir(parents=True, exist_ok=True)
    with _held(directory, create=True):
        before = read_format(directory / DB_FILE)
        SqliteStore(directory, durability=config.durability, migrate=True).close()
    return {"backend": "sqlite", "from_version": before, "to_version": FORMAT_VERSION}


@contextmanager
def _held(directory: Path, create: bool) -> Iterator[None]:
    """The data directory's engine lock (``LOCK``, the engine's own), so that no server
    runs on the store meanwhile: one running refuses the command (a copy would leave its
    later writes behind; an upgrade would open the file beside its writer). ``create``
    false: taken only if the file exists, through a read-only descriptor, so that nothing
    is created in a directory being copied."""
    try:
        flags = os.O_RDWR | os.O_CREAT if create else os.O_RDONLY
        fd = os.open(directory / "LOCK", flags, 0o644)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StoreOpenError(
                f"{directory} is in use by a running llmkg server: stop it first"
            ) from None
        yield
    finally:
        os.close(fd)


@contextmanager
def _readable(directory: Path) -> Iterator[tuple[Path, bool]]:
    """The store file to read and whether it is the source itself (to be opened
    immutable: nothing is created in ``directory``), with the directory's lock held. The
    source is read in place when it has no log and a format this llmkg reads as it is;
    otherwise it is copied (with its log) to a temporary directory and migrated there."""
    from llmkg.store.sqlite import DB_FILE, SqliteStore

    path = directory / DB_FILE
    if not path.is_file():
        raise StoreOpenError(f"{path} is not an llmkg store (no such file)")
    with _held(directory, create=False):
        wal = path.with_name(DB_FILE + "-wal")
        if not wal.exists() and _checked(path, immutable=True) == FORMAT_VERSION:
            yield path, True
            return
        tmp = Path(tempfile.mkdtemp(prefix="llmkg-migrate-"))
        try:
            # Plain file copies: no writer runs (the lock), and SQLite opening the copy
            # applies the log's committed transactions, as it would in place.
            shutil.copyfile(path, tmp / DB_FILE)
            if wal.exists():
                shutil.copyfile(wal, tmp / wal.name)
            if _checked(tmp / DB_FILE, immutable=False) < FORMAT_VERSION:
                SqliteStore(tmp, migrate=True).close()
            yield tmp / DB_FILE, False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _checked(path: Path, immutable: bool) -> int:
    version = read_format(path, immutable)
    if version is None:
        raise StoreOpenError(f"{path} is not an llmkg store (it has no nodes table)")
    if version > FORMAT_VERSION:
        raise StoreVersionError(
            f"{path} has store format {version}, written by a newer llmkg; this one "
            f"reads formats up to {FORMAT_VERSION}"
        )
    return version


def copy_sqlite(
    directory: str | Path,
    dsn: str,
    *,
    partition: int = 0,
    connect_timeout: float = 5.0,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """Copy the SQLite store in ``directory`` into the empty PostgreSQL database ``dsn``
    (see the module's docstring); ``{"nodes", "deleted", "last_seq", "seconds"}``
    (``nodes``: the live ones; ``deleted``: the tombstones). ``progress`` makes the
    reporter of the copy's rows (by default, log lines). Raises ``TargetNotEmptyError`` (nothing
    written) if the database holds facts or sequence numbers already."""
    from llmkg.store.pgschema import open_schema
    from llmkg.store.sqlite import LAST_SEQ

    started = time.monotonic()
    with (
        _readable(Path(directory)) as (path, in_place),
        connect(dsn, connect_timeout) as (pg, target),
    ):
        source = read_only(path, immutable=in_place)
        try:
            # One read transaction: every row and the last sequence of the same moment.
            source.execute("BEGIN")
            last_seq = int(source.execute(LAST_SEQ).fetchone()[0])
            source_id = source.execute("SELECT value FROM info WHERE key='store_id'").fetchone()
            # The largest id ever given out (AUTOINCREMENT keeps it), even if its row is
            # not there: the identity column must never hand it out again.
            top = source.execute(
                "SELECT max(coalesce((SELECT max(id) FROM nodes), 0), coalesce((SELECT seq "
                "FROM sqlite_sequence WHERE name = 'nodes'), 0))"
            ).fetchone()
            max_id = int(top[0])
            total = int(source.execute("SELECT count(*) FROM nodes").fetchone()[0])
            report = (progress or log_lines(log))("copying rows", total, "rows")
            open_schema(pg, target, partition, migrate=True)
            with pg.transaction():
                # No writer may add a row or a sequence number between the check and
                # the commit (a server started on the database meanwhile waits).
                pg.execute("LOCK TABLE llmkg_partitions, llmkg_nodes IN EXCLUSIVE MODE")
                _refuse_non_empty(pg, target)
                nodes = deleted = 0
                with pg.cursor() as cur:
                    copy_sql = f"COPY llmkg_nodes ({TARGET_COLUMNS}) FROM STDIN (FORMAT BINARY)"
                    with cur.copy(copy_sql) as copy:
                        copy.set_types(COPY_TYPES)
                        rows = source.execute(f"SELECT {SOURCE_COLUMNS} FROM nodes ORDER BY id")
                        for node_id, s, p, o, *rest, dead in rows:
                            key = triple_key(s, p, o)
                            copy.write_row((partition, node_id, key, s, p, o, *rest, bool(dead)))
                            nodes += 1
                            deleted += bool(dead)
                            report.advance()
                report.done()
                pg.execute(
                    "UPDATE llmkg_partitions SET last_seq = %s WHERE partition = %s",
                    (last_seq, partition),
                )
                if max_id > 0:
                    pg.execute(
                        "SELECT setval(pg_get_serial_sequence('llmkg_nodes', 'id'), %s)",
                        (max_id,),
                    )
                origin = f"sqlite {source_id[0] if source_id else '-'} at sequence {last_seq}"
                pg.execute(
                    "INSERT INTO llmkg_meta VALUES ('migrated_from', %s) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (origin,),
                )
        finally:
            source.close()
    return {
        "nodes": nodes - deleted,
        "deleted": deleted,
        "last_seq": last_seq,
        "seconds": round(time.monotonic() - started, 3),
    }


def _refuse_non_empty(pg: Connection, target: str) -> None:
    row = pg.execute(
        "SELECT EXISTS (SELECT 1 FROM llmkg_nodes), "
        "(SELECT coalesce(max(last_seq), 0) FROM llmkg_partitions)"
    ).fetchone()
    assert row is not None
    has_rows, top_seq = bool(row[0]), int(row[1])
    if has_rows or top_seq:
        holds = "node rows and " if has_rows else ""
        raise TargetNotEmptyError(
            f"{target} is not empty (it holds {holds}sequence numbers up to {top_seq}): "
            "a copy goes only into a database without llmkg data; nothing was written"
        )
