"""The engine's graph reads on each store: patterns in canonical form with pages, entity
views, the entity listing, children and ancestors, the parent rule on delete (also what
``get`` answers from the record cache), and the fields its errors name."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llmkg.engine import AllocationEngine, EngineConfig, FactError

DIM = 8


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).tolist()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AllocationEngine]:
    extra = {}
    if request.param == "postgresql":
        extra = {
            "store_backend": "postgresql",
            "postgres_dsn": request.getfixturevalue("pg_dsn"),
            "postgres_pool_size": 4,
        }
    config = EngineConfig(
        data_directory=tmp_path / "data",
        dim=DIM,
        checkpoint_interval=0,
        similarity_threshold=-1.0,  # every node but the first gets a parent
        **extra,  # type: ignore[arg-type]
    )
    with AllocationEngine(config) as e:
        yield e


def put(engine: AllocationEngine, s: str, p: str, o: str, seed: int, c: float = 0.5) -> int:
    fact = {"subject": s, "predicate": p, "object": o, "confidence": c, "embedding": unit(seed)}
    return engine.allocate(fact).node_id


def test_patterns_entities_and_the_hierarchy(engine: AllocationEngine) -> None:
    ids = [put(engine, f"s{i % 4}", f"p{i % 3}", f"o{i % 5}", i, c=i / 40) for i in range(40)]
    nodes, nxt = engine.facts_matching(subject="  s1 ", limit=4)
    assert [n.node_id for n in nodes] == ids[1:17:4] and nxt == ids[13]
    rest, end = engine.facts_matching(subject="s1", limit=100, after=nxt)
    assert [n.node_id for n in rest] == ids[17::4] and end is None
    both, _ = engine.facts_matching(subject="s1", object="o1", min_confidence=0.5)
    assert [n.node_id for n in both] == [i for k, i in enumerate(ids) if k % 20 == 1 and k >= 20]
    everything, _ = engine.facts_matching(limit=1000)
    assert [n.node_id for n in everything] == ids

    entity = engine.entity("s2", limit=3)
    assert entity is not None and entity.name == "s2"
    assert [n.node_id for n in entity.as_subject] == ids[2:14:4]
    assert entity.as_subject_next == ids[10] and entity.as_object == []
    assert entity.predicates == {"p0": 3, "p1": 3, "p2": 4}
    assert engine.entity("nobody") is None
    names, after = engine.entities(prefix="o", limit=3)
    assert names == ["o0", "o1", "o2"] and after == "o2"
    assert engine.entities(prefix="o", after=after) == (["o3", "o4"], None)

    by_id = {n.node_id: n for n in everything}
    for node_id in ids:
        up = [n.node_id for n in engine.ancestors(node_id) or []]
        want, parent = [], by_id[node_id].parent
        while parent is not None:
            want.append(parent)
            parent = by_id[parent].parent
        assert up == want
        kids, _ = engine.children(node_id, limit=1000) or ([], None)
        assert [k.node_id for k in kids] == [i for i in ids if by_id[i].parent == node_id]
    assert engine.children(2**40) is None and engine.ancestors(2**40) is None


def test_a_deleted_parent_hands_its_children_on(engine: AllocationEngine) -> None:
    ids = [put(engine, f"s{i}", "p", "o", i) for i in range(30)]
    parents = {i: engine.get(i).parent for i in ids}  # type: ignore[union-attr]
    for victim in ids[:10]:
        kids = [i for i in parents if parents[i] == victim]
        assert engine.delete(victim)
        for kid in kids:
            parents[kid] = parents[victim]
            # Read through the record cache, which held the old parent.
            assert engine.get(kid).parent == parents[victim]  # type: ignore[union-attr]
        del parents[victim]
    live, _ = engine.facts_matching(limit=1000)
    assert {n.node_id: n.parent for n in live} == parents
    assert all(p is None or p in parents for p in parents.values())


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda e: e.facts_matching(subject=""), "subject"),
        (lambda e: e.facts_matching(predicate=3), "predicate"),
        (lambda e: e.facts_matching(min_confidence=2), "min_confidence"),
        (lambda e: e.facts_matching(limit=0), "limit"),
        (lambda e: e.facts_matching(limit=1001), "limit"),
        (lambda e: e.facts_matching(after=-1), "cursor"),
        (lambda e: e.entity(" "), "name"),
        (lambda e: e.entity("x", object_after="1"), "object_cursor"),
        (lambda e: e.entities(prefix=None), "prefix"),
        (lambda e: e.children(1, limit=True), "limit"),
        (lambda e: e.ancestors(1, max_depth=1001), "max_depth"),
    ],
)
def test_bad_arguments_name_their_field(engine: AllocationEngine, call: object, field: str) -> None:
    with pytest.raises(FactError) as e:
        call(engine)  # type: ignore[operator]
    assert e.value.field == field


def test_no_dangling_parent_under_concurrent_allocations_and_deletes(
    engine: AllocationEngine,
) -> None:
    """Allocations choose a parent before their commit; deletes race them. Whatever the
    interleaving, no live node ends up naming a deleted parent."""
    created: list[int] = []
    lock = threading.Lock()
    done = threading.Event()

    def allocate(offset: int) -> None:
        for i in range(offset, offset + 120):
            node_id = put(engine, f"s{i}", "p", "o", i)
            with lock:
                created.append(node_id)

    def delete() -> None:
        deleted = 0
        while not done.is_set() or deleted < 60:
            with lock:
                victim = created.pop(len(created) // 2) if len(created) > 3 else None
            if victim is not None:
                engine.delete(victim)
                deleted += 1
            elif done.is_set():
                return

    writers = [threading.Thread(target=allocate, args=(k * 1000,)) for k in range(2)]
    deleter = threading.Thread(target=delete)
    for t in [*writers, deleter]:
        t.start()
    for t in writers:
        t.join()
    done.set()
    deleter.join()
    live, _ = engine.facts_matching(limit=1000)
    ids = {n.node_id for n in live}
    assert len(ids) < 240, "some nodes were deleted"
    assert all(n.parent is None or n.parent in ids for n in live)
    for n in live:  # the engine's own view (record cache) agrees with the store
        assert engine.get(n.node_id).parent == n.parent  # type: ignore[union-attr]
