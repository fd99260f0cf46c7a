"""The index never disagrees with the store after a restart: snapshots of another store or
ahead of the store are ignored, an index that lacks or holds extra nodes is mended, a
re-allocation racing a delete stores no orphan row, and a close racing an allocation
loses nothing it acknowledged."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from llmkg.engine import AllocationEngine, EngineClosedError, EngineConfig
from llmkg.engine.snapshots import list_snapshots
from llmkg.store import StoreTimeoutError

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def fact(i: int, **kw: object) -> dict[str, object]:
    out: dict[str, object] = {
        "subject": f"s{i}",
        "predicate": "p",
        "object": f"o{i}",
        "confidence": 0.5,
        "embedding": unit(i).tolist(),
    }
    out.update(kw)
    return out


@pytest.fixture
def config(tmp_path: Path) -> EngineConfig:
    return EngineConfig(
        data_directory=tmp_path / "data", dim=DIM, direct_threshold=10, checkpoint_interval=0
    )


def wait_until(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)


def assert_consistent(engine: AllocationEngine, facts: dict[int, int]) -> None:
    """Every fact (seed -> node id) is stored, indexed, and found as its own nearest node;
    the index holds exactly the store's live nodes."""
    engine.sync_index()
    assert len(engine.index) == engine.store.count() == len(facts)
    for seed, node_id in facts.items():
        node = engine.get(node_id)
        assert node is not None and node.subject == f"s{seed}", (seed, node_id)
        best = engine.search(embedding=unit(seed), k=1)[0]
        assert best.node_id == node_id and best.score > 0.999, (seed, node_id, best)


def test_a_snapshot_ahead_of_the_store_is_ignored(config: EngineConfig, tmp_path: Path) -> None:
    """The store loses its last writes (here: its file is replaced by an older copy of
    itself, as a power cut with durability="interval" would leave it) while a snapshot of
    them remains. New writes then take the same sequence numbers and node ids."""
    facts: dict[int, int] = {}
    with AllocationEngine(config) as engine:
        for i in range(20):
            facts[i] = engine.allocate(fact(i)).node_id
        older = tmp_path / "older.sqlite3"
        engine.store.backup_to(older)
        for i in range(20, 40):
            engine.allocate(fact(i))
        engine.checkpoint()
    shutil.copyfile(older, config.data_directory / "llmkg.sqlite3")
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == "rebuild"
        for i in range(100, 110):  # ids 21..30 again, with other vectors
            facts[i] = engine.allocate(fact(i)).node_id
        assert_consistent(engine, facts)
    with AllocationEngine(config) as engine:
        assert_consistent(engine, facts)


def test_a_snapshot_ahead_of_the_store_does_not_stop_checkpoints(
    config: EngineConfig, tmp_path: Path
) -> None:
    """The writes the store lost were deletes: the snapshot is ahead of the store but holds
    no node the store lacks. Loaded, its tag would hold back every checkpoint until the store
    caught up with it."""
    facts: dict[int, int] = {}
    with AllocationEngine(config) as engine:
        for i in range(20):
            facts[i] = engine.allocate(fact(i)).node_id
        older = tmp_path / "older.sqlite3"
        engine.store.backup_to(older)
        for i in range(5):
            engine.delete(facts[i])
    shutil.copyfile(older, config.data_directory / "llmkg.sqlite3")
    with AllocationEngine(config) as engine:
        assert engine.snapshot_seq <= engine.store.last_seq == 20
        for i in range(100, 103):
            facts[i] = engine.allocate(fact(i)).node_id
        last = engine.store.last_seq
    assert list_snapshots(config.data_directory / "snapshots")[0].seq == last
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == "snapshot" and engine.startup["replayed"] == 0
        assert_consistent(engine, facts)


def test_a_snapshot_of_another_store_is_ignored(config: EngineConfig, tmp_path: Path) -> None:
    other = EngineConfig(data_directory=tmp_path / "other", dim=DIM, checkpoint_interval=0)
    with AllocationEngine(other) as engine:
        for i in range(1000, 1015):
            engine.allocate(fact(i))
    facts: dict[int, int] = {}
    with AllocationEngine(config) as engine:
        for i in range(20):
            facts[i] = engine.allocate(fact(i)).node_id
    # Its sequence (15) is not ahead of this store (20), and it is the only snapshot: only
    # the store id tells that its node ids are not this store's.
    shutil.rmtree(config.data_directory / "snapshots")
    (config.data_directory / "snapshots").mkdir()
    shutil.copy(
        list_snapshots(other.data_directory / "snapshots")[0].path,
        config.data_directory / "snapshots",
    )
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == "rebuild"
        assert_consistent(engine, facts)


def test_snapshots_are_published_only_once_the_store_has_synced_them(tmp_path: Path) -> None:
    """With durability="interval" the index runs ahead of what is on disk; the snapshot
    file appears only after the store's fsync, so a power cut can never leave a snapshot
    that holds writes the store lost."""
    config = EngineConfig(
        data_directory=tmp_path / "data",
        dim=DIM,
        durability="interval",
        sync_interval=3600,
        checkpoint_interval=0,
    )
    with AllocationEngine(config) as engine:
        for i in range(10):
            engine.allocate(fact(i))
        seen: list[list[Path]] = []
        real_sync = engine.store.sync

        def sync() -> None:
            seen.append([s.path for s in list_snapshots(engine.snapshot_dir)])
            real_sync()

        engine.store.sync = sync  # type: ignore[method-assign]
        seq = engine.checkpoint()
        assert seen == [[]]
        assert [s.seq for s in list_snapshots(engine.snapshot_dir)] == [seq]


def test_an_index_missing_a_stored_node_is_mended(config: EngineConfig) -> None:
    facts: dict[int, int] = {}
    with AllocationEngine(config) as engine:
        for i in range(20):
            facts[i] = engine.allocate(fact(i)).node_id
        engine.sync_index()
        engine.index.remove([facts[7]])  # stored, acknowledged, but not in the snapshot
        engine.checkpoint()
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == "snapshot"
        assert_consistent(engine, facts)


def test_an_index_holding_a_node_the_store_lacks_is_rebuilt(config: EngineConfig) -> None:
    facts: dict[int, int] = {}
    with AllocationEngine(config) as engine:
        for i in range(20):
            facts[i] = engine.allocate(fact(i)).node_id
        engine.sync_index()
        engine.index.add([999], unit(999)[None, :])
        engine.checkpoint()
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == "rebuild" and 999 not in engine.index
        assert_consistent(engine, facts)


def test_raising_the_confidence_of_a_node_deleted_meanwhile_stores_it_anew(
    config: EngineConfig,
) -> None:
    with AllocationEngine(config) as engine:
        first = engine.allocate(fact(1)).node_id
        for i in range(2, 12):
            engine.allocate(fact(i))
        real_find = engine.store.find

        def find_then_delete(*triple: str) -> object:
            record = real_find(*triple)
            if record is not None:
                engine.delete(record.node_id)  # between the find and the raise
            return record

        engine.store.find = find_then_delete  # type: ignore[method-assign]
        again = engine.allocate(fact(1, confidence=0.9))
        engine.store.find = real_find  # type: ignore[method-assign]
        assert again.created and again.node_id != first and again.confidence == 0.9
        assert engine.get(first) is None
        facts = {i: engine.allocate(fact(i)).node_id for i in range(2, 12)}
        assert_consistent(engine, {1: again.node_id, **facts})


def test_a_close_waits_for_an_allocation_under_way_and_refuses_later_ones(
    config: EngineConfig,
) -> None:
    engine = AllocationEngine(config)
    committed, release = threading.Event(), threading.Event()
    real_insert = engine.store.insert

    def insert_then_pause(*args: object, **kw: object) -> object:
        out = real_insert(*args, **kw)  # type: ignore[arg-type]
        committed.set()
        release.wait(30)
        return out

    engine.store.insert = insert_then_pause  # type: ignore[method-assign]
    results: list[object] = []
    allocation = threading.Thread(target=lambda: results.append(engine.allocate(fact(1))))
    allocation.start()
    assert committed.wait(30)
    closing = threading.Thread(target=engine.close)
    closing.start()
    # The close has reached the write gate: it refuses new writes, and waits.
    wait_until(lambda: engine._gate._closed, "close() never reached the write gate")
    with pytest.raises(EngineClosedError):
        engine.delete(1)
    release.set()
    allocation.join(30)
    closing.join(30)
    assert not allocation.is_alive() and not closing.is_alive()
    assert len(results) == 1 and results[0].created  # type: ignore[attr-defined]
    with AllocationEngine(config) as reopened:
        assert reopened.startup["source"] == "snapshot"
        assert_consistent(reopened, {1: results[0].node_id})  # type: ignore[attr-defined]


def test_a_write_that_commits_after_its_deadline_is_indexed_on_the_retry(
    config: EngineConfig,
) -> None:
    """A write can outlive its ``write_timeout``: the allocation answers an error while the
    commit goes on. The client's retry finds the stored triple; the engine indexes it then,
    instead of answering with a node that get() and search() cannot see."""
    with AllocationEngine(config) as engine:
        for i in range(2, 12):
            engine.allocate(fact(i))
        real_insert = engine.store.insert

        def commit_then_time_out(*args: object, **kw: object) -> object:
            real_insert(*args, **kw)  # type: ignore[arg-type]
            raise StoreTimeoutError("the store did not commit the write in time; it may still")

        engine.store.insert = commit_then_time_out  # type: ignore[method-assign]
        with pytest.raises(StoreTimeoutError):
            engine.allocate(fact(1))
        engine.store.insert = real_insert  # type: ignore[method-assign]
        again = engine.allocate(fact(1))
        assert not again.created
        facts = {i: engine.store.find(f"s{i}", "p", f"o{i}").node_id for i in range(1, 12)}
        assert again.node_id == facts[1]
        assert_consistent(engine, facts)
