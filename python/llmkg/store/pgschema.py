"""The PostgreSQL store's tables, their version, and what a store checks when it opens.

``schema_version`` in ``llmkg_meta`` is the version: 1 is the first; 2 adds indexes
over the live rows for the graph's reads: ``subject``, ``predicate`` and ``object`` by
their MD5 (a B-tree entry cannot hold a text of up to 4096 characters; a query names the
hash and the text), each followed by ``id`` so that a pattern's matches come in id order,
and ``parent`` (children, and the re-parenting of a deleted node's children); 3 adds a
unique index on ``id`` alone (a node found by its id whatever its partition), one on
``parent`` over every partition (a parent's children, in whichever partition each
lives; it replaces version 2's ``parent`` index, which was per partition), and the
``partition_count`` meta row.

``partition_count`` is how many partitions the database's facts are split into; it is
fixed when the database is created, and a store opened with another count, or with a
partition beyond it, is refused (``StorePartitionsError``): a fact's home partition is a
hash of its triple modulo the count, so two counts would place the same fact twice. A
database of an earlier version gets the count it is opened with, if its partitions fit.

A newer version than ``SCHEMA_VERSION`` is refused (``StoreVersionError``) rather than
guessed at; an older one is migrated in the opening transaction, as SQLite stores are,
unless opening was told not to (``StoreOutdatedError``: ``llmkg-server migrate``
upgrades). Tables without a version row count as version 0. Every change so far is in
``SCHEMA``'s idempotent statements, so that running them upgrades any earlier version; a
change that cannot be written that way will get its own step here.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg

from llmkg.store.schema import StorePartitionsError, StoreVersionError, outdated

SCHEMA_VERSION = 3
MAX_NODE_ID = 2**53 - 1
# pg_advisory_xact_lock key taken while the schema is created or checked ("llmkg" in hex).
SCHEMA_LOCK = 0x6C6C6D6B67

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS llmkg_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS llmkg_partitions (
    partition integer PRIMARY KEY,
    last_seq bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS llmkg_nodes (
    partition integer NOT NULL,
    id bigint GENERATED ALWAYS AS IDENTITY (MAXVALUE {MAX_NODE_ID}),
    triple_key bytea NOT NULL,
    subject text NOT NULL,
    predicate text NOT NULL,
    object text NOT NULL,
    confidence double precision NOT NULL,
    embedding bytea,
    parent bigint,
    seq bigint NOT NULL,
    reads bigint NOT NULL DEFAULT 0,
    deleted boolean NOT NULL DEFAULT false,
    PRIMARY KEY (partition, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS llmkg_nodes_triple
    ON llmkg_nodes (partition, triple_key) WHERE NOT deleted;
CREATE UNIQUE INDEX IF NOT EXISTS llmkg_nodes_seq ON llmkg_nodes (partition, seq);
CREATE INDEX IF NOT EXISTS llmkg_nodes_subject
    ON llmkg_nodes (partition, md5(subject), id) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS llmkg_nodes_predicate
    ON llmkg_nodes (partition, md5(predicate), id) WHERE NOT deleted;
CREATE INDEX IF NOT EXISTS llmkg_nodes_object
    ON llmkg_nodes (partition, md5(object), id) WHERE NOT deleted;
DROP INDEX IF EXISTS llmkg_nodes_parent;
CREATE UNIQUE INDEX IF NOT EXISTS llmkg_nodes_id ON llmkg_nodes (id);
CREATE INDEX IF NOT EXISTS llmkg_nodes_children ON llmkg_nodes (parent, id) WHERE NOT deleted;
"""


def read_version(conn: psycopg.Connection[Any]) -> int | None:
    """The schema version of the database behind ``conn`` (None: no llmkg tables yet)."""
    exists = conn.execute("SELECT to_regclass('llmkg_meta') IS NOT NULL").fetchone()
    if not (exists and exists[0]):
        return None
    row = conn.execute("SELECT value FROM llmkg_meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def open_schema(
    conn: psycopg.Connection[Any],
    target: str,
    partition: int,
    migrate: bool = True,
    partition_count: int = 1,
) -> str:
    """Create the tables (or check their version and partition count) and ``partition``'s
    counter row, on a connection to the store named ``target`` in messages; returns the
    store's id. With ``migrate`` false, tables of an older version raise
    ``StoreOutdatedError``, untouched. Under an advisory lock, so that processes starting
    together on a new database do not race to create the same tables."""
    if not 0 <= partition < partition_count:
        raise StorePartitionsError(
            f"partition {partition} is not one of the {partition_count} partitions configured"
        )
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        version = read_version(conn)
        if version is not None and version > SCHEMA_VERSION:
            raise StoreVersionError(
                f"{target} has llmkg schema version {version}, written by a "
                f"newer llmkg; this one knows versions up to {SCHEMA_VERSION}"
            )
        if version is not None and version < SCHEMA_VERSION and not migrate:
            raise outdated(target, "llmkg schema version", version, SCHEMA_VERSION)
        conn.execute(SCHEMA)
        conn.execute(
            "INSERT INTO llmkg_meta VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(SCHEMA_VERSION),),
        )
        conn.execute(
            "INSERT INTO llmkg_meta VALUES ('store_id', %s) ON CONFLICT DO NOTHING",
            (uuid.uuid4().hex,),
        )
        _check_partitions(conn, target, partition_count)
        conn.execute(
            "INSERT INTO llmkg_partitions (partition) VALUES (%s) ON CONFLICT DO NOTHING",
            (partition,),
        )
        row = conn.execute("SELECT value FROM llmkg_meta WHERE key = 'store_id'").fetchone()
        assert row is not None
        return str(row[0])


def _check_partitions(conn: psycopg.Connection[Any], target: str, count: int) -> None:
    row = conn.execute("SELECT value FROM llmkg_meta WHERE key = 'partition_count'").fetchone()
    if row is None:
        # A new database, or one of an earlier version: its partitions must fit the count.
        top = conn.execute("SELECT coalesce(max(partition), -1) FROM llmkg_partitions")
        highest = int(top.fetchone()[0])  # type: ignore[index]
        if highest >= count:
            raise StorePartitionsError(
                f"{target} holds partition {highest}, beyond the {count} partitions configured"
            )
        conn.execute("INSERT INTO llmkg_meta VALUES ('partition_count', %s)", (str(count),))
        return
    stored = int(row[0])
    if stored != count:
        raise StorePartitionsError(
            f"{target} is split into {stored} partitions; this server is configured for "
            f"{count} (a fact's partition depends on the count: it cannot change in place)"
        )
