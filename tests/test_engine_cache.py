"""The engine's record caches: reads go L1 -> L2 -> store, stay coherent with confidence
updates and deletes, prefetch graph neighbours, and warm up from the most-read nodes."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from llmkg.engine import AllocationEngine, EngineConfig

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def fact(i: int, confidence: float = 0.5) -> dict:
    return {
        "subject": f"s{i}",
        "predicate": "p",
        "object": f"o{i}",
        "confidence": confidence,
        "embedding": unit(i).tolist(),
    }


@pytest.fixture
def config(tmp_path: Path) -> EngineConfig:
    return EngineConfig(data_directory=tmp_path / "data", dim=DIM, checkpoint_interval=0)


def test_repeated_reads_hit_the_cache_not_the_store(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        for i in range(50):
            engine.allocate(fact(i))
        engine.records.tiers.clear()
        engine.search(embedding=unit(3), k=10)
        first = engine.stats()["cache"]["store_reads"]
        assert first > 0
        for _ in range(5):
            engine.search(embedding=unit(3), k=10)
        cache = engine.stats()["cache"]
        assert cache["store_reads"] == first, "the same nodes again come from the cache"
        assert cache["l1_hit_rate"] > 0.5


def test_a_new_node_is_cached_by_its_allocation(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        ids = [engine.allocate(fact(i)).node_id for i in range(30)]
        hits = engine.search(embedding=unit(7), k=30)
        assert sorted(h.node_id for h in hits) == sorted(ids)
        assert engine.get(ids[7]).subject == "s7"
        assert engine.stats()["cache"]["store_reads"] == 0


def test_the_cache_follows_confidence_updates_and_deletes(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        node = engine.allocate(fact(1, 0.3)).node_id
        assert engine.get(node).confidence == 0.3
        engine.allocate(fact(1, 0.8))
        assert engine.get(node).confidence == 0.8
        assert engine.search(embedding=unit(1), k=1)[0].node.confidence == 0.8
        engine.delete(node)
        assert engine.get(node) is None
        assert engine.search(embedding=unit(1), k=1) == []


def test_without_caching_everything_comes_from_the_store(config: EngineConfig) -> None:
    config.enable_caching = False
    with AllocationEngine(config) as engine:
        for i in range(10):
            engine.allocate(fact(i))
        assert engine.search(embedding=unit(4), k=1)[0].node.object == "o4"
        assert engine.stats()["cache"]["enabled"] is False


def test_prefetch_brings_graph_neighbours_into_l2(config: EngineConfig) -> None:
    config.prefetch_distance = 4
    with AllocationEngine(config) as engine:
        ids = [engine.allocate(fact(i)).node_id for i in range(100)]
        engine.sync_index()  # its links are what prefetch follows
        engine.records.tiers.clear()
        engine.get(ids[7])
        near = [int(n) for n in engine.index.neighbors(ids[7])[:4]]
        deadline = time.monotonic() + 30  # a deadline for a loaded machine, not a speed
        while time.monotonic() < deadline and not all(n in engine.records.tiers.l2 for n in near):
            time.sleep(0.02)
        assert near and all(n in engine.records.tiers.l2 for n in near)


def test_warm_up_loads_the_most_read_nodes(config: EngineConfig) -> None:
    with AllocationEngine(config) as engine:
        ids = [engine.allocate(fact(i)).node_id for i in range(40)]
        for _ in range(3):
            engine.get(ids[5])
            engine.get(ids[9])
        # close() writes the read counters to the store
    config.cache_warmup_on_startup = True
    config.cache_warmup_count = 2
    with AllocationEngine(config) as engine:
        assert engine.stats()["startup"]["warmed_up"] == 2
        assert ids[5] in engine.records.tiers and ids[9] in engine.records.tiers
        assert ids[6] not in engine.records.tiers
