"""The PostgreSQL store against a real server: one node per triple under concurrent
inserts (threads, and two store objects), sequences in commit order seen by a polling
reader, the schema's version and keys, partitions, refused backups, and an unreachable
database. What it shares with the SQLite store is in test_store_backends.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np
import psycopg
import pytest
from pglib import PASSWORD, Cluster, cluster
from serverlib import free_port

from llmkg.store import (
    BackupUnsupportedError,
    StoreOpenError,
    StorePartitionsError,
    StoreUnavailableError,
    StoreVersionError,
)
from llmkg.store.pgconn import describe
from llmkg.store.pgschema import MAX_NODE_ID, SCHEMA_VERSION
from llmkg.store.placement import triple_key
from llmkg.store.postgres import PostgresStore

T = TypeVar("T")
DEADLINE = 60.0  # seconds: far past every configured timeout; reached only by a hang


def vec(x: float) -> np.ndarray:
    return np.full(4, x, dtype=np.float32)


@pytest.fixture
def store(pg_dsn: str) -> Iterator[PostgresStore]:
    with PostgresStore(pg_dsn, pool_size=8) as s:
        yield s


def finishes(fn: Callable[[], T], deadline: float = DEADLINE) -> T:
    """``fn()`` in a thread: its result or exception, or a failure if it hangs."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as e:
            outcome.append((False, e))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(deadline)
    assert outcome, f"still blocked after {deadline}s: the store hangs"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def same_triples_from(stores: list[PostgresStore], threads_per_store: int) -> None:
    """Every thread inserts the same 20 triples (each in its own order) at once: each
    triple ends as one node, created by exactly one of them."""
    n = len(stores) * threads_per_store
    start = threading.Barrier(n)

    def insert_all(t: int) -> list[tuple[int, int, bool]]:
        s = stores[t % len(stores)]
        order = np.random.default_rng(t).permutation(20)
        start.wait()
        out = []
        for i in order.tolist():
            record, created = s.insert("shared", "p", f"o{i}", 0.5 + t / 100, vec(i))
            out.append((i, record.node_id, created))
        return out

    with ThreadPoolExecutor(n) as pool:
        results = [r for batch in pool.map(insert_all, range(n)) for r in batch]
    for i in range(20):
        mine = [(node_id, created) for j, node_id, created in results if j == i]
        assert len({node_id for node_id, _ in mine}) == 1, f"triple {i}: several nodes"
        assert sum(created for _, created in mine) == 1, f"triple {i}: not one creation"
    assert stores[0].count() == 20
    seqs = [c.seq for c in stores[0].changes_after(0)]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)
    found = stores[0].find("shared", "p", "o0")
    assert found is not None and found.confidence == 0.5 + (n - 1) / 100, "max of all merges"


def test_same_triple_from_eight_threads_is_one_node(store: PostgresStore) -> None:
    same_triples_from([store], 8)


def test_a_live_duplicate_takes_no_sequence_number(store: PostgresStore) -> None:
    """A triple stored again, and one under a deleted parent: the duplicate's failed
    insert gives its number back (followers wait for every number), and the new node
    hangs under the deleted parent's own live parent."""
    root, _ = store.insert("root", "p", "o", 0.5, vec(1))
    mid, _ = store.insert("mid", "p", "o", 0.5, vec(2), parent=root.node_id)
    before = store.last_seq
    again, created = store.insert("root", "p", "o", 0.5, vec(1))
    assert (again.node_id, created, store.last_seq) == (root.node_id, False, before)
    assert store.delete(mid.node_id)
    leaf, created = store.insert("leaf", "p", "o", 0.5, vec(3), parent=mid.node_id)
    assert created and leaf.parent == root.node_id and leaf.seq == before + 2
    assert store.last_seq == before + 2


def test_same_triple_from_two_store_objects_is_one_node(pg_dsn: str) -> None:
    with PostgresStore(pg_dsn, pool_size=4) as a, PostgresStore(pg_dsn, pool_size=4) as b:
        assert a.store_id == b.store_id, "the store id is the database's"
        same_triples_from([a, b], 4)


def test_a_polling_reader_sees_every_change_in_commit_order(
    store: PostgresStore, pg_dsn: str
) -> None:
    """Four writers insert, raise and delete while a reader polls ``changes_after(last)``:
    the sequences it sees only grow, and what it saw ends equal to the table."""
    done = threading.Event()
    seen: dict[int, tuple[int, bool]] = {}
    seqs: list[int] = []

    def poll() -> None:
        last = 0
        while True:
            finished = done.is_set()  # read first: the poll after it sees every write
            for change in store.changes_after(last):
                assert change.seq > last, "changes_after went back or repeated a sequence"
                last = change.seq
                seqs.append(change.seq)
                seen[change.node_id] = (change.seq, change.record is None)
            if finished:
                return

    def write(t: int) -> None:
        mine: list[int] = []
        for i in range(60):
            record, _ = store.insert(f"w{t}", "p", str(i), 0.5, vec(i))
            mine.append(record.node_id)
            if i % 3 == 2:
                store.raise_confidence(mine[-2], 0.5 + i / 100)
            if i % 5 == 4:
                store.delete(mine[-3])

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(write, range(4)))
    finally:
        done.set()
        reader.join(DEADLINE)
    assert not reader.is_alive()
    assert len(seqs) == len(set(seqs)), "a sequence number seen twice"
    with psycopg.connect(pg_dsn) as conn:
        table = {
            node_id: (seq, deleted)
            for node_id, seq, deleted in conn.execute("SELECT id, seq, deleted FROM llmkg_nodes")
        }
    assert seen == table
    assert max(seqs) == store.last_seq == store.committed_seq == 4 * (60 + 20 + 12)


def test_a_newer_schema_version_is_refused(pg_dsn: str) -> None:
    PostgresStore(pg_dsn).close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE llmkg_meta SET value = %s WHERE key = 'schema_version'", ("99",))
    with pytest.raises(StoreVersionError, match=f"version 99.*up to {SCHEMA_VERSION}") as e:
        PostgresStore(pg_dsn)
    assert PASSWORD not in str(e.value)
    assert isinstance(e.value, StoreOpenError), "the server exits 2 on it, as for SQLite"


def test_every_table_is_keyed_by_partition_and_ids_fit_a_double(
    store: PostgresStore, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn) as conn:
        keys = dict(
            conn.execute(
                "SELECT c.conrelid::regclass::text, "
                "(SELECT attname FROM pg_attribute WHERE attrelid = c.conrelid "
                " AND attnum = c.conkey[1]) "
                "FROM pg_constraint c WHERE c.contype = 'p' AND c.conrelid::regclass::text "
                "LIKE 'llmkg_%'"
            ).fetchall()
        )
        identity_max = conn.execute(
            "SELECT seqmax FROM pg_sequence WHERE seqrelid = "
            "pg_get_serial_sequence('llmkg_nodes', 'id')::regclass"
        ).fetchone()
    assert keys == {
        "llmkg_meta": "key",
        "llmkg_nodes": "partition",
        "llmkg_partitions": "partition",
    }
    assert identity_max == (MAX_NODE_ID,) and MAX_NODE_ID == 2**53 - 1


def test_partitions_keep_their_own_sequences_and_share_ids(pg_dsn: str) -> None:
    with (
        PostgresStore(pg_dsn, partition_count=2) as p0,
        PostgresStore(pg_dsn, partition=1, partition_count=2) as p1,
    ):
        a, _ = p0.insert("s", "p", "o", 0.5, vec(1))
        b, created = p1.insert("s", "p", "o", 0.5, vec(1))
        assert created and b.node_id != a.node_id, "ids are global, triples per partition"
        assert a.seq == b.seq == 1 and p0.last_seq == p1.last_seq == 1
        assert p0.get(b.node_id) is None and p1.count() == 1
        assert [c.node_id for c in p1.changes_after(0)] == [b.node_id]
        # Any partition's store finds which partition holds a node, deleted or not.
        assert p1.delete(b.node_id)
        assert (p0.partition_of(a.node_id), p0.partition_of(b.node_id)) == (0, 1)
        assert p0.partition_of(b.node_id + 1000) is None


def test_a_parent_may_live_in_another_partition(pg_dsn: str) -> None:
    """Children, ancestors and a delete's re-parenting cross partitions; the moved child
    takes its own partition's next sequence, so that the followers of that partition
    see the move."""
    with (
        PostgresStore(pg_dsn, partition_count=2) as a,
        PostgresStore(pg_dsn, partition=1, partition_count=2) as b,
    ):
        root, _ = a.insert("root", "p", "o", 0.5, vec(1))
        mid, _ = a.insert("mid", "p", "o", 0.5, vec(2), parent=root.node_id)
        child, _ = b.insert("child", "p", "o", 0.5, vec(3), parent=mid.node_id)
        assert child.parent == mid.node_id
        assert [r.node_id for r in a.children(mid.node_id, 0, 10)] == [child.node_id]
        assert [r.node_id for r in b.ancestors(child.node_id, 10)] == [mid.node_id, root.node_id]
        before = b.last_seq
        assert a.detach(mid.node_id) == [child.node_id]
        moved = [(c.node_id, c.record.parent) for c in b.changes_after(before) if c.record]
        assert moved == [(child.node_id, root.node_id)] and b.last_seq == before + 1
        late, _ = b.insert("late", "p", "o", 0.5, vec(4), parent=mid.node_id)
        assert late.parent == root.node_id, "a deleted parent hands on to its live parent"


def test_the_partition_count_is_fixed_per_database(pg_dsn: str) -> None:
    """The count a database was created with is the only one it opens with: a fact's
    partition is its hash modulo the count."""
    PostgresStore(pg_dsn, partition_count=4).close()
    with pytest.raises(StorePartitionsError, match=r"split into 4 partitions.*configured for 8"):
        PostgresStore(pg_dsn, partition_count=8)
    with pytest.raises(StorePartitionsError, match="partition 4 is not one of the 4"):
        PostgresStore(pg_dsn, partition=4, partition_count=4)
    with PostgresStore(pg_dsn, partition=3, partition_count=4) as p3:
        assert p3.count() == 0


def test_a_database_of_schema_2_gets_the_count_its_partitions_fit(pg_dsn: str) -> None:
    with PostgresStore(pg_dsn, partition=2, partition_count=3) as s:
        s.insert("s", "p", "o", 0.5, vec(1))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM llmkg_meta WHERE key = 'partition_count'")
        conn.execute("UPDATE llmkg_meta SET value = '2' WHERE key = 'schema_version'")
        conn.execute("DROP INDEX llmkg_nodes_id")
    with pytest.raises(StorePartitionsError, match="holds partition 2, beyond the 2"):
        PostgresStore(pg_dsn, partition_count=2)
    with PostgresStore(pg_dsn, partition=2, partition_count=3) as s:
        assert s.count() == 1
    with psycopg.connect(pg_dsn) as conn:
        meta = dict(conn.execute("SELECT key, value FROM llmkg_meta").fetchall())
        indexed = conn.execute("SELECT to_regclass('llmkg_nodes_id') IS NOT NULL").fetchone()
    assert meta["partition_count"] == "3" and meta["schema_version"] == str(SCHEMA_VERSION)
    assert indexed == (True,)


def test_long_texts_fit_the_unique_index(store: PostgresStore) -> None:
    long = "x" * 4096
    a, created = store.insert(long, long, long, 0.5, vec(1))
    again, created_again = store.insert(long, long, long, 0.5, vec(1))
    assert created and not created_again and again.node_id == a.node_id
    assert triple_key("ab", "c", "d") != triple_key("a", "bc", "d")


def test_backups_are_the_databases(store: PostgresStore) -> None:
    with pytest.raises(BackupUnsupportedError, match="pg_dump"):
        store.backup_to("/nonexistent/llmkg.sqlite3")
    store.sync()  # a no-op: every returned write is committed
    assert store.wal_bytes() == 0


def test_messages_never_show_the_password() -> None:
    assert describe(f"postgresql://u:{PASSWORD}@127.0.0.1:5/db") == "postgresql://u@127.0.0.1:5/db"
    assert PASSWORD not in describe(f"host=h port=5 dbname=d password={PASSWORD}")
    with pytest.raises(StoreOpenError) as e:
        describe(f"host=h password={PASSWORD} junk")
    assert PASSWORD not in str(e.value)


def test_a_closed_port_is_unavailable_not_a_hang() -> None:
    dsn = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(StoreUnavailableError) as e:
        finishes(lambda: PostgresStore(dsn, connect_timeout=1))
    assert "127.0.0.1" in str(e.value) and PASSWORD not in str(e.value)


def test_a_database_that_goes_away_makes_every_call_unavailable() -> None:
    """A cluster of the test's own, stopped under an open store: reads and writes raise
    StoreUnavailableError (none blocks), and the store works again once it is back."""
    with cluster() as own:
        dsn = own.create_database()
        with PostgresStore(dsn, pool_size=2, connect_timeout=1) as s:
            kept, _ = s.insert("s", "p", "kept", 0.5, vec(1))
            own.stop()
            calls: list[Callable[[], object]] = [
                lambda: s.insert("s", "p", "lost", 0.5, vec(2)),
                lambda: s.get(kept.node_id),
                lambda: s.delete(kept.node_id),
                lambda: list(s.changes_after(0)),
                lambda: s.last_seq,
            ]
            for call in calls:
                with pytest.raises(StoreUnavailableError) as e:
                    finishes(call)
                assert PASSWORD not in str(e.value)
            own.start()

            def back() -> bool:
                while True:
                    try:
                        return s.get(kept.node_id) is not None
                    except StoreUnavailableError:
                        continue  # the pool reconnects in the background

            assert finishes(back)
            assert s.find("s", "p", "lost") is None


def test_no_call_fails_on_a_connection_that_died_with_the_old_server() -> None:
    """The pool holds four idle connections when the database restarts (as after a
    failover): none of them is handed out again, so the first reads and writes once it
    is back succeed."""
    with cluster() as own:
        dsn = own.create_database()
        with PostgresStore(dsn, pool_size=4, connect_timeout=5) as s:
            kept, _ = s.insert("s", "p", "kept", 0.5, vec(1))
            together = threading.Barrier(4)
            with ThreadPoolExecutor(4) as pool:  # four connections open at once
                list(pool.map(lambda _: s._read(lambda conn: together.wait(10)), range(4)))
            own.stop()
            own.start()
            assert finishes(lambda: s.get(kept.node_id)) == kept
            added, created = finishes(lambda: s.insert("s", "p", "added", 0.5, vec(2)))
            assert created and finishes(lambda: s.last_seq) == added.seq == 2


def test_a_wrong_password_is_refused_without_showing_it(
    pg_cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-password-51c2"
    dsn = f"postgresql://postgres:{wrong}@127.0.0.1:{pg_cluster.port}/postgres"
    with pytest.raises(StoreUnavailableError) as e:
        finishes(lambda: PostgresStore(dsn, connect_timeout=1))
    assert wrong not in str(e.value) and wrong not in caplog.text
    assert "password authentication failed" in caplog.text, "the log says why"
