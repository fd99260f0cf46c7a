"""The stores' reads of the graph, against each backend: triple patterns by id pages,
children, ancestors, entities by name pages, predicate counts, and the parent rule on
delete (children take the deleted node's parent in the same transaction)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest

from llmkg.store import SqliteStore, Store
from llmkg.store.records import Node, prefix_end

StoreFactory = Callable[[], Store]
VEC = np.ones(4, dtype=np.float32)
SUBJECTS = ["Ann", "Bob", "Béa", "Cy", "Dee", "Ed", "Éva", "Al"]
PREDICATES = ["knows", "likes", "is_a"]
OBJECTS = ["Bob", "Cy", "cat", "dog", "Ed", "Zed", "Al", "bird", "Ann", "fish"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteStore(tmp_path)
    else:
        from llmkg.store.postgres import PostgresStore

        opened = PostgresStore(request.getfixturevalue("pg_dsn"), pool_size=4)
    yield opened
    opened.close()


def build(store: Store, n: int, seed: int) -> dict[int, Node]:
    """``n`` facts of a small vocabulary, each with an earlier node (or none) as parent."""
    rng = random.Random(seed)
    model: dict[int, Node] = {}
    while len(model) < n:
        s, p, o = rng.choice(SUBJECTS), rng.choice(PREDICATES), rng.choice(OBJECTS)
        parent = rng.choice([None, *model]) if model else None
        conf = round(rng.random(), 3)
        record, created = store.insert(s, p, o, conf, VEC, parent=parent)
        if created:
            model[record.node_id] = Node(record.node_id, s, p, o, conf, parent)
        else:  # the stored triple keeps its node, at the larger confidence
            model[record.node_id] = msgspec.structs.replace(
                model[record.node_id], confidence=record.confidence
            )
    return model


def walk(page: Callable[[int], list[Node]]) -> list[Node]:
    """Every row of a keyset listing, a page at a time."""
    out: list[Node] = []
    after = 0
    while True:
        rows = page(after)
        out += rows
        if not rows:
            return out
        after = rows[-1].node_id


def test_patterns_children_and_ancestors_match_a_model(store: Store) -> None:
    model = build(store, 150, seed=1)
    for s, p, o in itertools.product([None, "Bob"], [None, "likes"], [None, "Cy"]):
        for min_conf in (None, 0.5):
            want = [
                r
                for r in model.values()
                if (s is None or r.subject == s)
                and (p is None or r.predicate == p)
                and (o is None or r.object == o)
                and (min_conf is None or r.confidence >= min_conf)
            ]
            got = walk(lambda a, s=s, p=p, o=o, c=min_conf: store.match(s, p, o, c, a, 7))
            assert got == sorted(want), (s, p, o, min_conf)
    for node_id in list(model)[:40]:
        kids = sorted(r for r in model.values() if r.parent == node_id)
        assert walk(lambda a, n=node_id: store.children(n, a, 3)) == kids
        chain, up = [], model[node_id].parent
        while up is not None:
            chain.append(model[up])
            up = model[up].parent
        assert store.ancestors(node_id, 1000) == chain
        assert store.ancestors(node_id, 2) == chain[:2]


def test_entities_and_predicate_counts(store: Store) -> None:
    model = build(store, 150, seed=2)
    names = sorted({r.subject for r in model.values()} | {r.object for r in model.values()})
    for prefix in ("", "B", "É", "Zed", "nobody"):
        want = [n for n in names if n.startswith(prefix)]
        got: list[str] = []
        after = None
        while page := store.entities(prefix, after, 2):
            got += page
            after = page[-1]
        assert got == want, prefix
    for name in ("Bob", "Cy", "dog", "nobody"):
        counts: dict[str, int] = {}
        for r in model.values():
            if name in (r.subject, r.object):
                counts[r.predicate] = counts.get(r.predicate, 0) + 1
        assert store.predicate_counts(name) == counts


def test_windows_around_names_match_a_model(store: Store) -> None:
    model = build(store, 200, seed=5)
    rng = random.Random(6)
    for victim in rng.sample(sorted(model), 30):  # deleted facts are in no window
        for kid in store.detach(victim) or []:
            model[kid] = msgspec.structs.replace(model[kid], parent=model[victim].parent)
        del model[victim]
    names = ["Bob", "Cy", "Ed", "Al", "nobody", "Éva"]
    for role, predicates, width in itertools.product(
        ("subject", "object"), (None, ["likes"], ["knows", "is_a"], []), (1, 3, 8, 1000)
    ):
        want_rows: list[Node] = []
        want_ends: dict[str, int] = {}
        for name in names:
            window = sorted(r for r in model.values() if getattr(r, role) == name)[:width]
            if len(window) == width:
                want_ends[name] = window[-1].node_id
            want_rows += [r for r in window if predicates is None or r.predicate in predicates]
        rows, ends = store.facts_around(names, role, predicates, width)
        assert rows == sorted(want_rows), (role, predicates, width)
        assert ends == want_ends, (role, predicates, width)
    assert store.facts_around([], "subject", None, 5) == ([], {})
    # A name or predicate with a NUL matches nothing (PostgreSQL could not even store it).
    rows, ends = store.facts_around(["Bob", "B\x00b"], "subject", ["likes", "x\x00"], 1000)
    assert rows == sorted(r for r in model.values() if (r.subject, r.predicate) == ("Bob", "likes"))
    with pytest.raises(ValueError):
        store.facts_around(["Bob"], "predicate", None, 5)


def test_windows_take_any_name_and_many_names(tmp_path: Path) -> None:
    # SQLite only: PostgreSQL's text holds no NUL. A name is matched whole, whatever its
    # characters, and a frontier of thousands of names is read whole.
    store = SqliteStore(tmp_path)
    try:
        odd = ["a\x00b", "a", 'q"uote', "\U0001f600", "é"]
        for i, name in enumerate(odd):
            store.insert(name, "p\x00", f"o{i}", 0.5, VEC)
        for i in range(3000):
            store.insert(f"n{i}", "p", f"o{i}", 0.5, VEC)
        rows, ends = store.facts_around(odd, "subject", ["p\x00"], 2)
        assert [r.subject for r in rows] == odd and ends == {}
        assert store.facts_around(["a\x00b"], "subject", ["p"], 2) == ([], {})
        names = [f"n{i}" for i in range(3000)]
        rows, ends = store.facts_around(names, "subject", None, 1)
        assert [r.subject for r in rows] == names and ends == {
            n: r.node_id for n, r in zip(names, rows, strict=True)
        }
    finally:
        store.close()


def test_prefix_end_bounds_the_prefix() -> None:
    assert prefix_end("") is None
    assert prefix_end("ab") == "ac"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\ud7ff") == "\ue000"


def test_a_delete_gives_the_children_their_grandparent(store: Store) -> None:
    model = build(store, 120, seed=3)
    rng = random.Random(4)
    seq = store.last_seq
    for victim in rng.sample(sorted(model), 60):
        kids = sorted(r.node_id for r in model.values() if r.parent == victim)
        assert store.detach(victim) == kids
        grandparent = model.pop(victim).parent
        for kid in kids:
            model[kid] = msgspec.structs.replace(model[kid], parent=grandparent)
        assert store.detach(victim) is None
        assert not store.delete(victim)
    live = {r.node_id: r.parent for r in walk(lambda a: store.match(None, None, None, None, a, 50))}
    assert live == {i: r.parent for i, r in model.items()}
    assert all(p is None or p in live for p in live.values()), "no dangling parent"
    # Each moved child was written again: a reader of the change log sees its new parent.
    changed = {c.node_id: c.record for c in store.changes_after(seq)}
    for node_id, parent in live.items():
        if node_id in changed:
            record = changed[node_id]
            assert record is not None and record.parent == parent


def test_an_insert_under_a_deleted_parent_takes_its_live_ancestor(store: Store) -> None:
    a, _ = store.insert("a", "p", "x", 0.5, VEC)
    b, _ = store.insert("b", "p", "x", 0.5, VEC, parent=a.node_id)
    c, _ = store.insert("c", "p", "x", 0.5, VEC, parent=b.node_id)
    store.delete(c.node_id)
    store.delete(b.node_id)
    d, _ = store.insert("d", "p", "x", 0.5, VEC, parent=c.node_id)
    assert d.parent == a.node_id
    store.delete(a.node_id)
    e, _ = store.insert("e", "p", "x", 0.5, VEC, parent=c.node_id)
    assert e.parent is None
    assert store.get(d.node_id).parent is None  # type: ignore[union-attr]
