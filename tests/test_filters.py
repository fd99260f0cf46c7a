"""Search filters: the checks of a filter mapping, and the core's fact index behind them,
whose filters agree with a walk over a plain model through adds, confidence changes and
removals, in ``id in flt`` tests as in the index's filtered searches."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg import FactIndex, HnswIndex, IndexBusyError
from llmkg._core import MISSING_ID
from llmkg.engine import AllocationEngine, EngineConfig, FactError
from llmkg.engine.filters import search_filter

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


FIELDS = ("subject", "predicate", "object")
Model = dict[int, tuple[tuple[str, str, str], float]]


def allowed_by_model(model: Model, flt: dict[str, Any]) -> set[int]:
    floor = flt.get("min_confidence")
    return {
        i
        for i, (triple, c) in model.items()
        if all(flt.get(name) in (None, v) for name, v in zip(FIELDS, triple, strict=True))
        and (floor is None or c >= floor)
    }


def test_filters_agree_with_a_model_through_churn() -> None:
    facts = FactIndex()
    index = HnswIndex(DIM)
    rng = random.Random(7)
    model: Model = {}
    vectors = {i: unit(i) for i in range(400)}
    for step in range(4000):
        action = rng.random()
        node_id = rng.randrange(400)
        if action < 0.6 and node_id not in model:
            triple = (f"s{node_id % 7}", f"p{node_id % 3}", f"o{node_id}")
            model[node_id] = (triple, rng.random())
            facts.add(node_id, *triple, model[node_id][1])
            index.add([node_id], vectors[node_id][None, :])
        elif action < 0.8 and node_id in model:
            model[node_id] = (model[node_id][0], rng.random())  # raised or lowered
            assert facts.set_confidence(node_id, model[node_id][1])
        elif action >= 0.8:
            assert facts.remove(node_id) == (model.pop(node_id, None) is not None)
            index.remove([node_id])
        if step % 400 == 0:
            floor = rng.random()
            for flt in (
                {"min_confidence": floor},
                {"subject": "s3", "min_confidence": floor},
                {"subject": "s3", "predicate": "p1"},
                {"predicate": "p2", "object": f"o{node_id}"},
                {"subject": "s3", "predicate": "nowhere"},
            ):
                made = search_filter(facts, flt, 100)
                assert made is not None
                want = allowed_by_model(model, flt)
                assert {i for i in range(400) if i in made} == want, flt
                found, _ = index.search(unit(step), k=400, filter=made, exact=True)
                assert set(found[found != MISSING_ID].tolist()) == want, flt
    assert len(facts) == len(model)
    assert facts.confidences() == {i: c for i, (_, c) in model.items()}
    some = [*list(model)[:2], 9999]
    assert facts.confidences(some) == {i: model[i][1] for i in some if i in model}


def test_a_filter_is_evaluated_when_used() -> None:
    facts = FactIndex()
    flt = facts.filter(subject="rex", min_confidence=0.5)
    assert 1 not in flt
    facts.add(1, "rex", "is_a", "dog", 0.4)
    assert not flt.allows(1)
    facts.set_confidence(1, 0.9)  # raised: allowed from now on
    assert flt.allows(1) and 1 in flt
    facts.remove(1)
    assert 1 not in flt
    facts.add(1, "rex", "is_a", "cat", 0.9)  # the same id again
    assert 1 in flt and "1" not in flt and -1 not in flt


def test_the_fact_index_refuses_what_it_cannot_hold() -> None:
    facts = FactIndex()
    with pytest.raises(ValueError, match="NaN"):
        facts.add(1, "a", "b", "c", float("nan"))
    with pytest.raises(ValueError, match="min_confidence"):
        facts.filter(min_confidence=float("nan"))
    with pytest.raises(ValueError):
        facts.add(-1, "a", "b", "c", 0.5)
    assert len(facts) == 0 and not facts.set_confidence(5, 0.5)


@pytest.mark.parametrize(
    ("flt", "field"),
    [
        ({"colour": "red"}, "query.filter.colour"),
        ({"subject": 3}, "query.filter.subject"),
        ({"predicate": "   "}, "query.filter.predicate"),
        ({"object": "x" * 101}, "query.filter.object"),
        ({"min_confidence": 1.5}, "query.filter.min_confidence"),
        ({"min_confidence": float("nan")}, "query.filter.min_confidence"),
        ({"min_confidence": True}, "query.filter.min_confidence"),
        ({"min_confidence": "0.5"}, "query.filter.min_confidence"),
    ],
)
def test_a_bad_filter_names_its_field(flt: dict[str, Any], field: str) -> None:
    with pytest.raises(FactError) as err:
        search_filter(FactIndex(), flt, 100)
    assert err.value.field == field


def test_a_filter_that_names_nothing_is_no_filter() -> None:
    assert search_filter(FactIndex(), {"subject": None, "min_confidence": None}, 100) is None


def test_engine_filters_follow_raised_confidences_and_deletes(tmp_path: Path) -> None:
    config = EngineConfig(
        data_directory=tmp_path / "data", dim=DIM, direct_threshold=10, checkpoint_interval=0
    )
    with AllocationEngine(config) as engine:
        ids = [
            engine.allocate(
                {
                    "subject": f"s{i % 3}",
                    "predicate": f"p{i % 5}",
                    "object": f"o{i}",
                    "confidence": 0.3,
                    "embedding": unit(i).tolist(),
                }
            ).node_id
            for i in range(60)
        ]
        engine.sync_index()
        sure = {"min_confidence": 0.8}
        assert engine.search(embedding=unit(4), k=10, filter=sure) == []
        raised = engine.allocate(
            {"subject": "s1", "predicate": "p4", "object": "o4", "confidence": 0.9}
        )
        assert not raised.created and raised.node_id == ids[4]
        hits = engine.search(embedding=unit(4), k=10, filter=sure)
        assert [h.node_id for h in hits] == [ids[4]]
        both = {"subject": "s1", "predicate": "p4"}  # i = 4, 19, 34, 49
        assert {h.node_id for h in engine.search(embedding=unit(4), k=10, filter=both)} == {
            ids[4],
            ids[19],
            ids[34],
            ids[49],
        }
        assert engine.delete(ids[19])
        assert {h.node_id for h in engine.search(embedding=unit(4), k=10, filter=both)} == {
            ids[4],
            ids[34],
            ids[49],
        }
        assert engine.search(embedding=unit(4), filter={"subject": "s9"}) == []


def test_filtered_searches_run_beside_writes_of_the_facts() -> None:
    facts = FactIndex()
    index = HnswIndex(DIM)
    index.add(np.arange(2000), np.stack([unit(i) for i in range(2000)]))
    for i in range(2000):
        facts.add(i, f"s{i % 10}", "p", f"o{i}", (i % 100) / 100)
    flt = facts.filter(subject="s3", min_confidence=0.5)
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            n = 2000
            while not stop.is_set():
                facts.add(n, "s3", "p", f"o{n}", 0.99)  # never in the index
                facts.remove(n - 1000)
                n += 1
        except BaseException as e:  # reported by the main thread
            errors.append(e)

    writer = threading.Thread(target=churn)
    writer.start()
    try:
        for q in range(200):
            try:
                # Every other search must not wait: it declines while a write holds the facts.
                found, _ = index.search(unit(q), k=10, filter=flt, wait=q % 2 == 0)
            except IndexBusyError:
                continue
            for node_id in found[found != MISSING_ID].tolist():
                assert node_id % 10 == 3 and node_id % 100 >= 50
    finally:
        stop.set()
        writer.join(30)
    assert not writer.is_alive() and not errors
