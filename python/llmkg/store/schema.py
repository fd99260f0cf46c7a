"""The SQLite store's on-disk format: its tables, its version, and what a store checks when
it opens a file.

The format version is SQLite's ``PRAGMA user_version``:

- 0: the first format (``nodes`` and ``meta``), written before the version was kept.
- 1: adds ``info``, text facts about the store: ``store_id``, a random id given when the
  store is created, which index snapshots carry so that a snapshot of another store is
  never loaded into this one.
- 2: indexes over the live rows for the graph's reads: ``subject``, ``predicate`` and
  ``object`` (triple patterns, entities; SQLite appends the rowid to each entry, so a
  pattern's matches come in id order for keyset pages) and ``parent`` (children, and the
  re-parenting of a deleted node's children).

Opening a store migrates an older format in one transaction (unless told not to: then it
raises ``StoreOutdatedError``, and ``llmkg-server migrate`` is the step that upgrades), and
refuses a newer one (``StoreVersionError``) rather than guess at it. A new file is created
at the current format either way: there is nothing in it to migrate.

The ``clean_close`` row of ``meta`` is 0 while a store is open and 1 once it closed
cleanly: after an unclean end (a crash, a power cut), ``PRAGMA quick_check`` runs before
anything else, so that a damaged file stops start-up with its name (``StoreCorruptError``)
instead of failing requests later.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

FORMAT_VERSION = 2

BASE_SCHEMA = """
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

# MIGRATIONS[v] takes a store of format v to v + 1: its statements run in order inside
# the opening transaction.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    0: ("CREATE TABLE info (key TEXT PRIMARY KEY, value TEXT NOT NULL)",),
    1: tuple(
        f"CREATE INDEX nodes_{column} ON nodes({column}) WHERE deleted = 0"
        for column in ("subject", "predicate", "object", "parent")
    ),
}


class StoreOpenError(RuntimeError):
    """The store's file cannot be used; the message names it and says why."""


class StorePartitionsError(StoreOpenError):
    """The database is split into another number of partitions than the store was opened
    with, or the store's partition is not one of them."""


class StoreVersionError(StoreOpenError):
    """The file was written by a newer llmkg, in a format this one does not know."""


class StoreOutdatedError(StoreOpenError):
    """The store is of an older format and opening it was not allowed to migrate it."""


def outdated(target: str, what: str, version: int, current: int) -> StoreOutdatedError:
    return StoreOutdatedError(
        f"{target} has {what} {version}, older than this llmkg's {current}, and "
        "storage.auto_migrate is off: run `llmkg-server migrate` first"
    )


class StoreCorruptError(StoreOpenError):
    """The file is not an SQLite database, or fails its integrity check."""


def _exists(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='nodes'")
    return row.fetchone() is not None


def _closed_cleanly(conn: sqlite3.Connection) -> bool:
    row = conn.execute("SELECT value FROM meta WHERE key='clean_close'").fetchone()
    return row is not None and row[0] == 1


def _check_integrity(conn: sqlite3.Connection, path: Path) -> None:
    problems = [r[0] for r in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        detail = "; ".join(" ".join(p.split()) for p in problems)
        raise StoreCorruptError(
            f"{path} is damaged (SQLite quick_check: {detail}); restore it "
            "from a backup (llmkg-server restore)"
        )


def is_corruption(e: sqlite3.DatabaseError) -> bool:
    name = getattr(e, "sqlite_errorname", "")  # Python 3.11+
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return "malformed" in str(e) or "not a database" in str(e)


def read_only(path: Path, immutable: bool = False) -> sqlite3.Connection:
    """A read-only connection to ``path``. ``immutable``: not even the ``-wal`` and ``-shm``
    files that SQLite creates beside a WAL database for its readers (only for a file that
    has no log and that nothing writes meanwhile)."""
    flags = "mode=ro&immutable=1" if immutable else "mode=ro"
    return sqlite3.connect(f"{path.resolve().as_uri()}?{flags}", uri=True, isolation_level=None)


def read_format(path: Path, immutable: bool = False) -> int | None:
    """The format of the store file at ``path``, read without writing to it (None: no
    store there yet)."""
    if not path.exists():
        return None
    conn = read_only(path, immutable)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0]) if _exists(conn) else None
    finally:
        conn.close()


def open_format(conn: sqlite3.Connection, path: Path, migrate: bool = True) -> str:
    """Check, create or migrate the store behind ``conn`` (the writer's connection, in
    autocommit mode) and mark it open; returns the store's id. With ``migrate`` false an
    existing store of an older format raises ``StoreOutdatedError``, untouched. Errors
    other than a damaged file (a full disk, a lock held too long) pass through as they
    are."""
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > FORMAT_VERSION:
            raise StoreVersionError(
                f"{path} has store format {version}, written by a newer llmkg; this one "
                f"reads formats up to {FORMAT_VERSION}"
            )
        if _exists(conn):
            if version < FORMAT_VERSION and not migrate:
                raise outdated(str(path), "store format", version, FORMAT_VERSION)
            if not _closed_cleanly(conn):
                _check_integrity(conn, path)
        else:
            # A new file: format 0's tables (idempotent), migrated below like any other.
            conn.executescript(BASE_SCHEMA)
            version = 0
        conn.execute("BEGIN IMMEDIATE")
        for v in range(version, FORMAT_VERSION):
            for statement in MIGRATIONS[v]:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
        row = conn.execute("SELECT value FROM info WHERE key='store_id'").fetchone()
        store_id = uuid.uuid4().hex if row is None else str(row[0])
        conn.execute("INSERT OR IGNORE INTO info VALUES ('store_id', ?)", (store_id,))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('clean_close', 0)")
        conn.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if is_corruption(e):
            raise StoreCorruptError(f"{path} is not a readable llmkg store ({e})") from None
        raise
    return store_id


def mark_clean_close(conn: sqlite3.Connection) -> None:
    """Record that the store closed with every write finished (no check at next open)."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('clean_close', 1)")
