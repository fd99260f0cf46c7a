"""What every store does alike, run against each backend (SQLite in a temporary folder,
PostgreSQL in a database of its own): idempotent inserts, sequence numbers, tombstones and
the change log, counters and lookups, failing writes, closing."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from llmkg.store import SqliteStore, Store, StoreClosedError

StoreFactory = Callable[[], Store]


def vec(x: float) -> np.ndarray:
    return np.full(4, x, dtype=np.float32)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens the test's store (again, after a close: the same data)."""
    opened: list[Store] = []
    if request.param == "sqlite":

        def open_store() -> Store:
            opened.append(SqliteStore(tmp_path))
            return opened[-1]

    else:
        from llmkg.store.postgres import PostgresStore

        dsn = request.getfixturevalue("pg_dsn")

        def open_store() -> Store:
            opened.append(PostgresStore(dsn, pool_size=8, connect_timeout=5))
            return opened[-1]

    yield open_store
    for store in opened:
        store.close()


def test_insert_is_idempotent_per_triple(store_factory: StoreFactory) -> None:
    store = store_factory()
    a, created = store.insert("Pho", "is_a", "dog", 0.5, vec(1))
    assert created and a.node_id > 0 and a.seq == 1
    again, created = store.insert("Pho", "is_a", "dog", 0.9, vec(2))
    assert not created and again.node_id == a.node_id
    assert again.confidence == 0.9, "confidence merges with max by default"
    np.testing.assert_array_equal(again.embedding, vec(1))
    low, _ = store.insert("Pho", "is_a", "dog", 0.1, vec(2))
    assert low.confidence == 0.9 and low.seq == again.seq, "no change, no new sequence"
    b, created = store.insert("Pho", "is_a", "cat", 0.5, vec(3), parent=a.node_id)
    assert created and b.parent == a.node_id
    assert store.count() == 2
    assert store.find("Pho", "is_a", "dog") == store.get(a.node_id)
    assert store.last_seq == 3 and store.committed_seq == 3


def test_raise_confidence_never_lowers_and_never_revives(store_factory: StoreFactory) -> None:
    store = store_factory()
    a, _ = store.insert("s", "p", "o", 0.5, vec(1))
    raised = store.raise_confidence(a.node_id, 0.8)
    assert raised is not None and raised.confidence == 0.8 and raised.seq == 2
    same = store.raise_confidence(a.node_id, 0.6)
    assert same is not None and same.confidence == 0.8 and same.seq == 2
    assert store.delete(a.node_id)
    assert store.raise_confidence(a.node_id, 0.9) is None
    assert store.count() == 0 and store.last_seq == 3


def test_deletes_and_the_change_log(store_factory: StoreFactory) -> None:
    store = store_factory()
    ids = [store.insert(f"s{i}", "p", "o", 0.5, vec(i))[0].node_id for i in range(5)]
    assert store.delete(ids[1]) and not store.delete(ids[1])
    assert store.get(ids[1]) is None and store.count() == 4
    changes = list(store.changes_after(3))
    assert [(c.node_id, c.record is None) for c in changes] == [
        (ids[3], False),
        (ids[4], False),
        (ids[1], True),
    ]
    assert [c.seq for c in changes] == [4, 5, 6]
    # The same triple can be stored again after a delete, under a new id.
    again, created = store.insert("s1", "p", "o", 0.5, vec(1))
    assert created and again.node_id not in ids
    store_id = store.store_id
    store.close()
    reopened = store_factory()
    assert reopened.last_seq == 7 and reopened.count() == 5
    assert reopened.store_id == store_id
    live = sorted(row[0] for row in reopened.iter_live())
    assert live == sorted([*ids[:1], *ids[2:], again.node_id])


def test_concurrent_writers(store_factory: StoreFactory) -> None:
    store = store_factory()

    def write(t: int) -> None:
        for i in range(50):
            store.insert(f"t{t}", "n", str(i), 0.5, vec(i))

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.count() == 400 and store.writes == 400
    assert store.last_seq == 400 and store.committed_seq == 400
    seqs = [c.seq for c in store.changes_after(0)]
    assert seqs == list(range(1, 401))


def test_reads_counters_and_lookups(store_factory: StoreFactory) -> None:
    store = store_factory()
    ids = [store.insert("s", "p", str(i), 0.5, vec(i))[0].node_id for i in range(4)]
    store.add_reads({ids[2]: 5, ids[0]: 1})
    assert store.most_read(2) == [ids[2], ids[0]]
    record = store.get(ids[2])
    assert record is not None and record.reads == 5
    assert set(store.get_many([ids[0], ids[3], 999])) == {ids[0], ids[3]}
    assert store.find("s", "p", "nothing") is None and store.get(999) is None
    assert store.last_seq == 4, "read counters are not changes"


def test_closed_store_refuses_writes(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.close()
    with pytest.raises(StoreClosedError):
        store.insert("s", "p", "o", 0.5, vec(0))


def test_a_failing_write_alone_commits_nothing(store_factory: StoreFactory) -> None:
    """The failing write raises, changes nothing, and the store takes the next write."""

    def refuse(old: float, new: float) -> float:
        raise ValueError("refused")

    store = store_factory()
    store.insert("s", "p", "taken", 0.5, vec(0))
    with pytest.raises(ValueError, match="refused"):
        store.insert("s", "p", "taken", 0.9, vec(1), merge=refuse)
    _, created = store.insert("s", "p", "next", 0.5, vec(2))
    assert created and store.count() == 2
    taken = store.find("s", "p", "taken")
    assert taken is not None and taken.confidence == 0.5
    assert [c.seq for c in store.changes_after(0)] == [1, 2]
    store.close()
    reopened = store_factory()  # and all of it is durable
    assert reopened.count() == 2 and reopened.find("s", "p", "next") is not None


def test_a_failing_write_fails_alone(store_factory: StoreFactory) -> None:
    """Writes that raise (here a merge rule) run beside good ones: they fail on their own,
    every good write commits, and sequence numbers stay one per change."""

    def refuse(old: float, new: float) -> float:
        raise ValueError("refused")

    store = store_factory()
    store.insert("s", "p", "taken", 0.5, vec(0))

    def writer(t: int) -> list[str]:
        outcomes = []
        for i in range(40):
            if i % 5 == 0:
                try:
                    store.insert("s", "p", "taken", 0.9, vec(1), merge=refuse)
                    outcomes.append("stored")
                except ValueError:
                    outcomes.append("refused")
            else:
                store.insert("s", "p", f"o{t}-{i}", 0.5, vec(i))
                outcomes.append("ok")
        return outcomes

    with ThreadPoolExecutor(8) as pool:
        outcomes = [o for batch in pool.map(writer, range(8)) for o in batch]
    assert outcomes.count("refused") == 8 * 8 and outcomes.count("ok") == 8 * 32
    assert store.count() == 1 + 8 * 32
    taken = store.find("s", "p", "taken")
    assert taken is not None and taken.confidence == 0.5
    seqs = [c.seq for c in store.changes_after(0)]
    assert sorted(seqs) == list(range(1, len(seqs) + 1)), "one sequence number per change"
