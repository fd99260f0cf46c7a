"""Traversals and graph-expanded search on each store, against a plain breadth-first
search over the same facts: several seeded random graphs (disjoint vocabularies in one
engine, some facts deleted), every direction, predicate filters, hops 1 to 3, starts from
entities and from nodes, and max_facts small enough to cut; the read caps on a hub; the
fields that bad arguments name; and the same answers from the SQLite and the PostgreSQL
store."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from graphmodel import Row, bfs, expected_expansion

from llmkg.engine import AllocationEngine, EngineConfig, FactError
from llmkg.engine import traversal as tr

DIM = 8
PREDICATES = ["knows", "likes", "near"]
SEEDS = [11, 12, 13, 14]


def open_engine(tmp_path: Path, backend: str, dsn: str | None = None) -> AllocationEngine:
    extra = {}
    if backend == "postgresql":
        extra = {"store_backend": "postgresql", "postgres_dsn": dsn, "postgres_pool_size": 4}
    config = EngineConfig(
        data_directory=tmp_path / backend, dim=DIM, checkpoint_interval=0, **extra
    )  # type: ignore[arg-type]
    return AllocationEngine(config)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AllocationEngine]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    with open_engine(tmp_path, request.param, dsn) as e:
        yield e


def build(engine: AllocationEngine, seed: int, n: int = 120) -> dict[int, Row]:
    """A random graph over ``g{seed}:e0..`` (entities are subjects and objects both, some
    facts loops), with about a tenth of its facts deleted afterwards."""
    rng = random.Random(seed)
    entities = [f"g{seed}:e{i}" for i in range(rng.randrange(10, 30))]
    triples = {
        (rng.choice(entities), rng.choice(PREDICATES), rng.choice(entities)) for _ in range(n)
    }
    facts = [
        {"subject": s, "predicate": p, "object": o, "confidence": 0.5}
        for s, p, o in sorted(triples)
    ]
    rng.shuffle(facts)
    results = engine.allocate_many(facts)
    model = {
        r.node_id: Row(r.node_id, f["subject"], f["predicate"], f["object"])
        for f, r in zip(facts, results, strict=True)
    }
    for victim in rng.sample(sorted(model), len(model) // 10):
        assert engine.delete(victim)
        del model[victim]
    return model


def test_traversals_match_a_breadth_first_model(engine: AllocationEngine) -> None:
    for seed in SEEDS:
        model = build(engine, seed)
        rng = random.Random(seed * 7)
        names = sorted({r.subject for r in model.values()} | {r.object for r in model.values()})
        starts: list[tuple[list[str] | None, list[int] | None]] = [
            (rng.sample(names, 1), None),
            ([*rng.sample(names, 2), f"g{seed}:nobody"], None),
            (None, rng.sample(sorted(model), 1)),
            (None, [*rng.sample(sorted(model), 3), 2**40]),  # an id of no node reaches nothing
        ]
        for (entities, nodes), direction, predicates, hops in itertools.product(
            starts, ("out", "in", "both"), (None, ["likes"], ["knows", "near"]), (1, 2, 3)
        ):
            want = bfs(model, entities, nodes, hops, direction, predicates)
            case = (seed, entities, nodes, direction, predicates, hops)
            for max_facts in (1000, 7):
                got = engine.traverse(entities, nodes, hops, direction, predicates, max_facts)
                assert [(f.hop, f.node.node_id) for f in got.facts] == want[:max_facts], case
                assert got.truncated == (len(want) > max_facts), case
                assert not got.capped, case
                for f in got.facts:
                    row = model[f.node.node_id]
                    assert (f.node.subject, f.node.predicate, f.node.object) == (
                        row.subject,
                        row.predicate,
                        row.object,
                    )
        # Names are canonicalized as facts are, and repeats are one start.
        name = names[0]
        spaced = engine.traverse([f"  {name} ", name], direction="both", hops=2)
        assert spaced == engine.traverse([name], direction="both", hops=2)


def test_search_expansion_matches_the_model(engine: AllocationEngine) -> None:
    models = [build(engine, seed, n=60) for seed in SEEDS]
    model = {k: v for m in models for k, v in m.items()}
    for text, k, hops, max_facts, predicates in [
        ("g11:e1 knows", 5, 1, 200, None),
        ("g12:e3 likes g12:e4", 10, 2, 200, None),
        ("near", 8, 2, 15, None),
        ("g13:e2", 3, 2, 200, ["likes"]),
        ("g14:e5 near", 20, 1, 30, ["near", "knows"]),
    ]:
        plain = engine.search(text=text, k=k)
        expand = {"hops": hops, "max_facts": max_facts}
        if predicates is not None:
            expand["predicates"] = predicates  # type: ignore[assignment]
        found = engine.search(text=text, k=k, expand=expand)
        assert found.hits == plain, "expand leaves the hits as they are"
        hits = [h.node_id for h in found.hits]
        want, truncated = expected_expansion(model, hits, hops, max_facts, predicates)
        got = [(e.source, e.hop, e.node.node_id) for e in found.expanded]
        assert got == want, (text, k, hops, max_facts, predicates)
        assert found.truncated == truncated and not found.capped
        assert len(got) == len({g[2] for g in got}), "each fact once"
    # Defaults: one hop, at most 50 facts.
    found = engine.search(text="g11:e1", k=3, expand={})
    want, truncated = expected_expansion(model, [h.node_id for h in found.hits], 1, 50, None)
    assert [(e.source, e.hop, e.node.node_id) for e in found.expanded] == want


def test_a_hub_costs_a_window_and_says_when_it_was_capped(
    engine: AllocationEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    facts = [
        {"subject": "hub", "predicate": "has", "object": f"x{i}", "confidence": 0.5}
        for i in range(30)
    ]
    facts.append({"subject": "hub", "predicate": "rare", "object": "gem", "confidence": 0.5})
    ids = [r.node_id for r in engine.allocate_many(facts)]
    rare = engine.traverse(["hub"], predicates=["rare"])
    assert [f.node.node_id for f in rare.facts] == [ids[-1]] and not rare.capped
    # Ten rows a hop: the window of the hub's ten first facts holds no "rare" fact.
    monkeypatch.setattr(tr, "ROWS_PER_HOP", 10)
    capped = engine.traverse(["hub"], predicates=["rare"])
    assert capped.facts == [] and capped.capped and not capped.truncated
    # Without a filter a full window is no loss when max_facts cuts before its end.
    first = engine.traverse(["hub"], max_facts=5)
    assert [f.node.node_id for f in first.facts] == ids[:5]
    assert first.truncated and not first.capped
    everything = engine.traverse(["hub"], max_facts=1000)
    assert [f.node.node_id for f in everything.facts] == ids[:10]
    assert everything.capped and not everything.truncated
    # Beside small entities the hub's window is widened with what they left unread (a
    # second read), within the same allowance of rows.
    small = [
        {"subject": f"small{i}", "predicate": "has", "object": f"y{i}", "confidence": 0.5}
        for i in range(9)
    ]
    small_ids = [r.node_id for r in engine.allocate_many(small)]
    monkeypatch.setattr(tr, "ROWS_PER_HOP", 100)
    start = ["hub", *(f["subject"] for f in small)]
    widened = engine.traverse(start, max_facts=1000)
    assert [f.node.node_id for f in widened.facts] == ids + small_ids
    assert not widened.capped and not widened.truncated
    monkeypatch.setattr(tr, "TOP_UPS", 0)
    assert engine.traverse(start, max_facts=1000).capped


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda e: e.traverse(), "start"),
        (lambda e: e.traverse(["a"], [1]), "start"),
        (lambda e: e.traverse([]), "start.entities"),
        (lambda e: e.traverse("abc"), "start.entities"),
        (lambda e: e.traverse(["a"] * 101), "start.entities"),
        (lambda e: e.traverse(["a", " "]), "start.entities[1]"),
        (lambda e: e.traverse(["a", 3]), "start.entities[1]"),
        (lambda e: e.traverse(nodes=[]), "start.nodes"),
        (lambda e: e.traverse(nodes=[1, 0]), "start.nodes[1]"),
        (lambda e: e.traverse(nodes=[True]), "start.nodes[0]"),
        (lambda e: e.traverse(nodes=[2**53]), "start.nodes[0]"),
        (lambda e: e.traverse(nodes=5), "start.nodes"),
        (lambda e: e.traverse(["a"], hops=0), "hops"),
        (lambda e: e.traverse(["a"], hops=4), "hops"),
        (lambda e: e.traverse(["a"], hops="2"), "hops"),
        (lambda e: e.traverse(["a"], direction="up"), "direction"),
        (lambda e: e.traverse(["a"], predicates=[]), "predicates"),
        (lambda e: e.traverse(["a"], predicates="likes"), "predicates"),
        (lambda e: e.traverse(["a"], predicates=["x", ""]), "predicates[1]"),
        (lambda e: e.traverse(["a"], max_facts=0), "max_facts"),
        (lambda e: e.traverse(["a"], max_facts=1001), "max_facts"),
        (lambda e: e.search(text="a", expand=3), "query.expand"),
        (lambda e: e.search(text="a", expand={"hops": 3}), "query.expand.hops"),
        (lambda e: e.search(text="a", expand={"max_facts": 201}), "query.expand.max_facts"),
        (lambda e: e.search(text="a", expand={"predicates": []}), "query.expand.predicates"),
        (lambda e: e.search(text="a", expand={"depth": 1}), "query.expand.depth"),
    ],
)
def test_bad_arguments_name_their_field(engine: AllocationEngine, call: object, field: str) -> None:
    with pytest.raises(FactError) as e:
        call(engine)  # type: ignore[operator]
    assert e.value.field == field


def test_both_stores_answer_alike(tmp_path: Path, pg_dsn: str) -> None:
    answers = []
    for backend in ("sqlite", "postgresql"):
        with open_engine(tmp_path, backend, pg_dsn) as engine:
            model = build(engine, 21, n=200)
            names = sorted({r.subject for r in model.values()})
            got = []
            for direction, hops in itertools.product(("out", "in", "both"), (1, 2, 3)):
                for max_facts, predicates in ((1000, None), (9, ["likes", "near"])):
                    found = engine.traverse(names[:2], None, hops, direction, predicates, max_facts)
                    got.append(
                        (
                            [
                                (f.hop, f.node.subject, f.node.predicate, f.node.object)
                                for f in found.facts
                            ],
                            found.truncated,
                        )
                    )
            answers.append(got)
    assert answers[0] == answers[1]
