"""AllocationEngine through its Python API: the allocation rules, search with filters,
deletes, restarts from snapshots (good, damaged or missing) and concurrency."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from llmkg.engine import AllocationEngine, DataDirectoryInUseError, EngineConfig, FactError

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def fact(i: int, embedding: np.ndarray | None = None, **kw) -> dict:
    out = {"subject": f"s{i}", "predicate": "p", "object": f"o{i}", "confidence": 0.5}
    if embedding is not None:
        out["embedding"] = embedding.tolist() if isinstance(embedding, np.ndarray) else embedding
    out.update(kw)
    return out


@pytest.fixture
def config(tmp_path: Path) -> EngineConfig:
    return EngineConfig(
        data_directory=tmp_path / "data", dim=DIM, direct_threshold=50, checkpoint_interval=0
    )


def test_allocation_is_idempotent_per_canonical_triple(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        first = engine.allocate(fact(1, unit(1)))
        assert first.created and first.node_id >= 1 and first.parent is None
        again = engine.allocate(
            {"subject": "  s1 ", "predicate": "p", "object": "o1\t", "confidence": 0.9}
        )
        assert not again.created and again.node_id == first.node_id
        assert again.confidence == 0.9, "the larger confidence wins"
        lower = engine.allocate(fact(1, confidence=0.2))
        assert lower.confidence == 0.9 and lower.node_id == first.node_id
        other_case = engine.allocate(
            {"subject": "S1", "predicate": "p", "object": "o1", "confidence": 0.5}
        )
        assert other_case.created, "case is kept: S1 is another subject"
        assert engine.get(first.node_id).subject == "s1"


def test_winner_takes_all_parent_and_neighbours(config: EngineConfig) -> None:
    config.similarity_threshold = 0.9
    config.neighbors = 3
    with AllocationEngine(config) as engine:
        base = unit(7)
        root = engine.allocate(fact(0, base))
        far = engine.allocate(fact(1, -base))
        assert far.parent is None, "no candidate above the threshold"
        near = engine.allocate(fact(2, base + 0.05 * unit(8)))
        assert near.parent is not None and near.parent.node_id == root.node_id
        assert near.parent.similarity >= 0.9
        assert [n.node_id for n in near.neighbors][:1] == [root.node_id]
        assert len(near.neighbors) == 2 and near.strategy == "direct"
        assert near.precision == "q8", "confidence 0.5: the medium band (t/2 <= 0.5 < t)"
        assert near.processing_time_ms > 0


def test_direct_then_hierarchical_at_the_threshold(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        strategies = [engine.allocate(fact(i, unit(i))).strategy for i in range(60)]
        assert strategies[:50] == ["direct"] * 50, "fewer than 50 nodes: exact scan"
        assert set(strategies[50:]) == {"hierarchical"}
        assert engine.stats()["strategy"] == "hierarchical"


def test_the_builtin_embedder_places_similar_facts_together(config: EngineConfig) -> None:
    config.similarity_threshold = 0.2
    with AllocationEngine(config) as engine:
        rex = engine.allocate(
            {"subject": "Rex", "predicate": "is_a", "object": "dog", "confidence": 1}
        )
        engine.allocate(
            {"subject": "Paris", "predicate": "capital_of", "object": "France", "confidence": 1}
        )
        pho = engine.allocate(
            {"subject": "Pho", "predicate": "is_a", "object": "dog", "confidence": 1}
        )
        assert pho.parent is not None and pho.parent.node_id == rex.node_id
        hits = engine.search(text="is a dog", k=2)
        assert {h.node.subject for h in hits} == {"Rex", "Pho"}


def test_search_filters_and_deletes(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        ids = []
        for i in range(40):
            f = {
                "subject": f"s{i % 4}",
                "predicate": "likes" if i % 2 else "hates",
                "object": f"o{i}",
                "confidence": i / 40,
                "embedding": unit(i).tolist(),
            }
            ids.append(engine.allocate(f).node_id)
        hits = engine.search(embedding=unit(5), k=5)
        assert hits[0].node_id == ids[5] and hits[0].score == pytest.approx(1.0, abs=1e-5)
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        hits = engine.search(
            embedding=unit(5), k=40, filter={"subject": "s1", "predicate": "likes"}
        )
        assert {h.node.subject for h in hits} == {"s1"} and len(hits) == 10
        hits = engine.search(embedding=unit(5), k=40, filter={"min_confidence": 0.5})
        assert len(hits) == 20 and min(h.node.confidence for h in hits) >= 0.5
        assert engine.search(embedding=unit(5), filter={"object": "nowhere"}) == []
        assert engine.delete(ids[5]) and not engine.delete(ids[5])
        assert engine.get(ids[5]) is None
        assert ids[5] not in [h.node_id for h in engine.search(embedding=unit(5), k=40)]
        assert ids[5] not in [
            h.node_id for h in engine.search(embedding=unit(5), k=40, filter={"subject": "s1"})
        ]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (
            lambda e: e.allocate({"subject": "a", "predicate": "b", "object": "c"}),
            "fact.confidence",
        ),
        (lambda e: e.allocate(fact(1, confidence=1.5)), "fact.confidence"),
        (lambda e: e.allocate(fact(1, confidence=float("nan"))), "fact.confidence"),
        (lambda e: e.allocate(fact(1, subject="   ")), "fact.subject"),
        (lambda e: e.allocate(fact(1, subject="x" * 5000)), "fact.subject"),
        (lambda e: e.allocate(fact(1, object=3)), "fact.object"),
        (lambda e: e.allocate(fact(1, embedding=[0.1] * 3)), "fact.embedding"),
        (lambda e: e.allocate(fact(1, embedding=[float("inf")] * DIM)), "fact.embedding"),
        (lambda e: e.allocate(fact(1, colour="red")), "fact.colour"),
        (lambda e: e.allocate_many([fact(1), "not a fact"]), "facts[1]"),
        (lambda e: e.search(), "query"),
        (lambda e: e.search(text="x", k=0), "query.k"),
        (lambda e: e.search(text="x", k=1001), "query.k"),
        (lambda e: e.search(text="x", ef=0), "query.ef"),
        (lambda e: e.search(embedding=[1.0] * 3), "query.embedding"),
        (lambda e: e.search(text="x", filter={"colour": "red"}), "query.filter.colour"),
        (lambda e: e.search(text="x", filter={"min_confidence": 2}), "query.filter.min_confidence"),
    ],
)
def test_bad_input_names_the_field(config: EngineConfig, call, field: str) -> None:
    with AllocationEngine(config) as engine:
        with pytest.raises(FactError) as err:
            call(engine)
        assert err.value.field == field
        assert engine.stats()["nodes"] == 0, "nothing of a rejected batch is stored"


def test_restart_loads_the_snapshot_and_replays_the_rest(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        ids = [engine.allocate(fact(i, unit(i))).node_id for i in range(100)]
        engine.checkpoint()
        more = [engine.allocate(fact(i, unit(i))).node_id for i in range(100, 130)]
        engine.delete(ids[0])
        before = [h.node_id for h in engine.search(embedding=unit(3), k=10)]
        seq = engine.store.committed_seq
    # close() wrote a final snapshot; simulate a crash after the first one by removing it.
    snapshots = sorted((config.data_directory / "snapshots").iterdir())
    assert len(snapshots) == 2
    snapshots[-1].unlink()
    with AllocationEngine(config) as engine:
        start = engine.stats()["startup"]
        assert start["source"] == "snapshot" and 0 < start["snapshot_seq"] < seq
        assert start["replayed"] == 31
        assert engine.stats()["nodes"] == 129
        assert [h.node_id for h in engine.search(embedding=unit(3), k=10)] == before
        assert engine.get(ids[0]) is None and engine.get(more[-1]) is not None


@pytest.mark.parametrize("damage", ["corrupt", "truncate", "delete", "all"])
def test_damaged_snapshots_never_lose_data(config: EngineConfig, damage: str) -> None:
    with AllocationEngine(config) as engine:
        for i in range(60):
            engine.allocate(fact(i, unit(i)))
        engine.checkpoint()
        for i in range(60, 80):
            engine.allocate(fact(i, unit(i)))
    snaps = sorted((config.data_directory / "snapshots").iterdir())
    newest = snaps[-1]
    if damage == "corrupt":
        data = bytearray(newest.read_bytes())
        data[len(data) // 2] ^= 0xFF
        newest.write_bytes(bytes(data))
    elif damage == "truncate":
        newest.write_bytes(newest.read_bytes()[:100])
    elif damage == "delete":
        newest.unlink()
    else:
        for s in snaps:
            s.write_bytes(b"garbage")
    with AllocationEngine(config) as engine:
        assert engine.stats()["nodes"] == 80
        assert engine.stats()["startup"]["source"] == ("rebuild" if damage == "all" else "snapshot")
        for i in (0, 59, 79):
            assert engine.search(embedding=unit(i), k=1)[0].node.object == f"o{i}"


def test_exact_only_when_hnsw_is_off(config: EngineConfig) -> None:
    config.enable_hnsw = False
    with AllocationEngine(config) as engine:
        results = [engine.allocate(fact(i, unit(i))) for i in range(80)]
        assert {r.strategy for r in results} == {"direct"}
        assert engine.search(embedding=unit(70), k=1)[0].node_id == results[70].node_id


def test_threads_allocating_and_searching(config: EngineConfig) -> None:
    errors: list[BaseException] = []
    with AllocationEngine(config) as engine:

        def work(t: int) -> None:
            try:
                for i in range(50):
                    n = t * 1000 + i
                    engine.allocate(fact(n, unit(n)))
                    engine.allocate(fact(n % 7, unit(n % 7), subject=f"dup{n % 7}"))  # contended
                    engine.search(embedding=unit(n), k=5)
                if t == 0:
                    engine.checkpoint()
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors, errors
        assert engine.stats()["nodes"] == 4 * 50 + 7
        assert engine.store.count() == 4 * 50 + 7


def test_backup_wipe_restore_gives_the_same_answers(config: EngineConfig, tmp_path: Path) -> None:
    import shutil

    from llmkg.engine import BackupError, restore

    with AllocationEngine(config) as engine:
        for i in range(120):
            engine.allocate(fact(i, unit(i)))
        engine.delete(1)
        folder = engine.backup()
        assert folder.parent == config.data_directory.with_name("data-backups")
        before = [
            [(h.node_id, h.node.object) for h in engine.search(embedding=unit(i), k=5)]
            for i in range(0, 120, 7)
        ]
        engine.allocate(fact(500, unit(500)))  # after the backup: not in it
    shutil.rmtree(config.data_directory / "snapshots")
    (config.data_directory / "llmkg.sqlite3").unlink()
    with pytest.raises(BackupError, match="already holds llmkg files"):
        other = tmp_path / "other"
        restore(folder, other)
        restore(folder, other)
    shutil.rmtree(config.data_directory)
    manifest = restore(folder, config.data_directory)
    assert manifest["nodes"] == 119
    with AllocationEngine(config) as engine:
        assert engine.stats()["nodes"] == 119 and engine.stats()["startup"]["source"] == "snapshot"
        after = [
            [(h.node_id, h.node.object) for h in engine.search(embedding=unit(i), k=5)]
            for i in range(0, 120, 7)
        ]
        assert after == before
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    with open(tampered / "llmkg.sqlite3", "r+b") as f:
        f.seek(200)
        f.write(b"\xff")
    with pytest.raises(BackupError, match="checksum"):
        restore(tampered, tmp_path / "target")
    assert not (tmp_path / "target" / "llmkg.sqlite3").exists()


def test_precision_follows_importance(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        levels = {
            c: engine.allocate(fact(i, unit(i), confidence=c)).precision
            for i, c in enumerate([0.9, 0.5, 0.3, 0.1])
        }
        assert levels == {0.9: "full", 0.5: "q8", 0.3: "q4", 0.1: "binary"}
        low = engine.allocate(fact(10, unit(10), confidence=0.1)).node_id
        for _ in range(40):  # reads raise importance: 0.1 + 0.1 * log2(41) > 0.6
            engine.search(embedding=unit(10), k=1)
        engine.sync_index()  # the index itself is read next
        moved = engine.rebalance()
        assert moved["promoted"] >= 1 and engine.index.precision_of(low) == "q8"
        assert engine.store.get(low).reads == 0, "counts are written at checkpoints"
        engine.checkpoint()
        assert engine.store.get(low).reads == 40
        # Raised from the full vector, not from the binary code it had.
        q8_error = np.abs(engine.index.get_vector(low) - unit(10)).max()
        assert q8_error < 0.01
    config.enable_quantization = False
    with AllocationEngine(config) as engine:
        assert engine.allocate(fact(20, unit(20), confidence=0.1)).precision == "full"


def test_memory_pressure_demotes_and_search_still_finds_every_node(config: EngineConfig) -> None:
    config.memory_budget = 1  # any process is over a one-byte budget
    with AllocationEngine(config) as engine:
        first = [engine.allocate(fact(i, unit(i), confidence=0.9)) for i in range(30)]
        assert {r.precision for r in first} == {"full"}
        engine.rebalance()
        assert engine.stats()["memory"]["under_pressure"]
        later = engine.allocate(fact(99, unit(99), confidence=0.9))
        assert later.precision == "q8", "under pressure a new node is one level cheaper"
        for _ in range(40):
            engine.rebalance()
        precisions = engine.stats()["index"]["precisions"]
        assert precisions["binary"] == 31, precisions
        for i in [*range(30), 99]:
            assert engine.search(embedding=unit(i), k=1)[0].node.object == f"o{i}"


def test_everything_off_as_in_the_development_overlay(config: EngineConfig) -> None:
    config.enable_hnsw = config.enable_caching = config.enable_quantization = False
    with AllocationEngine(config) as engine:
        results = [engine.allocate(fact(i, unit(i), confidence=0.1)) for i in range(60)]
        assert {(r.strategy, r.precision) for r in results} == {("direct", "full")}
        assert engine.search(embedding=unit(42), k=1)[0].node_id == results[42].node_id
        assert engine.stats()["cache"]["enabled"] is False
        engine.delete(results[42].node_id)
    with AllocationEngine(config) as engine:
        assert engine.stats()["nodes"] == 59
        assert engine.search(embedding=unit(7), k=1)[0].node.object == "o7"


def test_writes_past_max_wal_size_trigger_one_snapshot(config: EngineConfig) -> None:
    config.max_wal_size = 20 * 1024  # about 100 facts of 16 floats and short texts
    with AllocationEngine(config) as engine:
        for i in range(20):
            engine.allocate(fact(i, unit(i)))
        assert not engine._checkpoint_if_due(), "below the limit, and no timed checkpoints"
        for i in range(20, 400):
            engine.allocate(fact(i, unit(i)))
        # This call takes the snapshot, or the background checkpointer (which checks every
        # second) already took it while the facts were written.
        engine._checkpoint_if_due()
        seq = engine.snapshot_seq
        assert seq == engine.store.committed_seq > 0
        engine.allocate(fact(1000, unit(1000)))
        assert not engine._checkpoint_if_due(), "the count starts again after a snapshot"
        assert engine.snapshot_seq == seq


def test_uncompressed_snapshots_and_tuning_survive_a_restart(config: EngineConfig) -> None:
    config.compression_level = None
    with AllocationEngine(config) as engine:
        ids = [engine.allocate(fact(i, unit(i))).node_id for i in range(30)]
        engine.checkpoint()
    names = [p.name for p in (config.data_directory / "snapshots").iterdir()]
    assert names and all(n.endswith(".llmkg") for n in names), names
    config.ef_search, config.max_level = 37, 2
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == "snapshot"
        assert (engine.index.ef_search, engine.index.max_level) == (37, 2)
        assert engine.search(embedding=unit(5), k=1)[0].node_id == ids[5]


def test_without_adaptive_precision_every_node_gets_the_default(config: EngineConfig) -> None:
    config.enable_adaptive, config.default_precision = False, "q4"
    with AllocationEngine(config) as engine:
        results = [engine.allocate(fact(i, unit(i), confidence=i / 10)) for i in range(11)]
        assert {r.precision for r in results} == {"q4"}
        engine.rebalance()
        assert {engine.index.precision_of(r.node_id) for r in results} == {"q4"}


def test_batches_over_max_batch_are_refused_whole(config: EngineConfig) -> None:
    config.max_batch = 3
    with AllocationEngine(config) as engine:
        with pytest.raises(FactError) as err:
            engine.allocate_many([fact(i) for i in range(4)])
        assert err.value.field == "facts"
        assert engine.stats()["nodes"] == 0


def test_one_engine_per_data_directory(config: EngineConfig) -> None:
    with AllocationEngine(config):
        with pytest.raises(DataDirectoryInUseError):
            AllocationEngine(config)
    with AllocationEngine(config):  # released by close()
        pass


def test_a_raised_confidence_and_the_end_of_pressure_move_nodes_back_up(
    config: EngineConfig,
) -> None:
    with AllocationEngine(config) as engine:
        low = engine.allocate(fact(1, unit(1), confidence=0.1))
        assert low.precision == "binary"
        engine.allocate(fact(1, unit(1), confidence=0.95))  # the same triple, surer
        engine.rebalance()
        assert engine.index.precision_of(low.node_id) == "full"

        others = [engine.allocate(fact(i, unit(i), confidence=0.9)).node_id for i in range(2, 40)]
        engine.precision.budget = 1  # pressure: a tenth of the nodes one level down per pass
        for _ in range(40):
            engine.rebalance()
        assert set(engine.index.precisions_of(others)) == {"binary"}
        engine.precision.budget = 1 << 60  # pressure gone: one full pass restores them
        engine.rebalance()
        assert set(engine.index.precisions_of(others)) == {"full"}
        assert engine.search(embedding=unit(5), k=1)[0].score == pytest.approx(1.0, abs=1e-5)


def test_the_fact_index_knows_exactly_the_stored_triples() -> None:
    from llmkg.engine.filters import FactIndex

    facts = FactIndex()
    facts.add(1, "pho", "is_a", "dog", 0.5)
    facts.add(2, "pho", "likes", "cats", 0.5)
    facts.add(3, "rex", "is_a", "cat", 0.5)
    assert facts.contains("pho", "is_a", "dog") and facts.contains("rex", "is_a", "cat")
    # Each field is some node's, but no node has all three.
    assert not facts.contains("pho", "is_a", "cat") and not facts.contains("rex", "likes", "dog")
    assert not facts.contains("nobody", "is_a", "dog")
    facts.remove(1)
    assert not facts.contains("pho", "is_a", "dog")


def test_concurrent_allocations_of_one_new_fact_make_one_node(config: EngineConfig) -> None:
    # A new fact skips the store read (the fact index does not know it yet): the store's
    # own check must still give every caller the one node.
    def allocate(engine: AllocationEngine, n: int, i: int, start: threading.Barrier, out: list):
        start.wait()
        out.append(engine.allocate(fact(n, unit(n), confidence=i / 10)))

    with AllocationEngine(config) as engine:
        for n in range(5):
            start, results = threading.Barrier(6), []
            threads = [
                threading.Thread(target=allocate, args=(engine, n, i, start, results))
                for i in range(6)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert len({r.node_id for r in results}) == 1 and len(results) == 6
            assert sum(r.created for r in results) == 1
        assert engine.stats()["nodes"] == 5
