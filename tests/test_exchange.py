"""Export and import of a graph, in-process, on both stores: an export imported into an
empty store reproduces the triples, confidences, parent links (by triple) and, when
exported, the vectors; an export reads the store a page at a time, and writes made while
it runs never show a fact twice; an import checks every line before it stores anything,
refuses a store with facts unless it merges, and links parents that come later or not
at all by its stated rules; the engine places facts under the parents they name."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg._core import embed_fact
from llmkg.engine import AllocationEngine, EngineConfig, FactError, exchange
from llmkg.engine.exchange import export
from llmkg.engine.importer import LineError, StoreNotEmptyError, import_file
from llmkg.store import Store, open_store
from llmkg.store.records import ExportRow

DIM = 16
Triple = tuple[str, str, str]
ConfigFactory = Callable[[str], EngineConfig]


def unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


@pytest.fixture(params=["sqlite", "postgresql"])
def configs(request: pytest.FixtureRequest, tmp_path: Path) -> ConfigFactory:
    """An engine config per name: its own data directory and, on PostgreSQL, its own
    database (a store of its own)."""

    def make(name: str) -> EngineConfig:
        config = EngineConfig(
            data_directory=tmp_path / name,
            dim=DIM,
            checkpoint_interval=0,
            similarity_threshold=-1.0,  # every fact gets the nearest node as its parent
        )
        if request.param == "postgresql":
            config.store_backend = "postgresql"
            config.postgres_dsn = request.getfixturevalue("pg_cluster").create_database()
        return config

    return make


def rows(store: Store, embeddings: bool = False) -> list[ExportRow]:
    return store.export_page(0, 10**6, embeddings)


def graph(store: Store) -> dict[Triple, tuple[float, Triple | None]]:
    """Every live fact by triple: its confidence and its parent's triple."""
    return {
        (r.subject, r.predicate, r.object): (r.confidence, r.parent_triple) for r in rows(store)
    }


def vectors(store: Store) -> dict[Triple, bytes | None]:
    return {(r.subject, r.predicate, r.object): r.embedding for r in rows(store, True)}


def build_source(config: EngineConfig, n: int = 300) -> None:
    """Facts under their nearest neighbours, some raised, some deleted (their children
    moved to the deleted node's parent)."""
    with AllocationEngine(config) as engine:
        ids = [
            engine.allocate(
                {
                    "subject": f"s{i}",
                    "predicate": f"p{i % 7}",
                    "object": f"o{i % 31}",
                    "confidence": round((i % 10) / 10, 1),
                    "embedding": unit(i),
                }
            ).node_id
            for i in range(n)
        ]
        for i in range(0, n, 9):
            engine.allocate(
                {
                    "subject": f"s{i}",
                    "predicate": f"p{i % 7}",
                    "object": f"o{i % 31}",
                    "confidence": 0.95,
                    "embedding": unit(i),
                }
            )
        for i in range(5, n, 17):
            assert engine.delete(ids[i])


def write_export(config: EngineConfig, path: Path, embeddings: bool) -> int:
    store = open_store(config)
    try:
        with open(path, "wb") as out:
            return export(store, out, embeddings)
    finally:
        store.close()


def run_import(config: EngineConfig, path: Path | str, **kw: Any) -> Any:
    store = open_store(config)
    try:
        return import_file(
            store, str(path), dim=config.dim, max_text_length=config.max_text_length, **kw
        )
    finally:
        store.close()


@pytest.mark.parametrize("embeddings", [False, True], ids=["text", "vectors"])
def test_an_export_imported_into_an_empty_store_reproduces_the_graph(
    configs: ConfigFactory, tmp_path: Path, embeddings: bool
) -> None:
    source, target = configs("source"), configs("target")
    build_source(source)
    file = tmp_path / "graph.ndjson"
    exported = write_export(source, file, embeddings)
    store = open_store(source)
    expected, expected_vectors = graph(store), vectors(store)
    store.close()
    assert exported == len(expected) == 300 - len(range(5, 300, 17))
    linked = sum(1 for _, parent in expected.values() if parent is not None)
    assert linked > 200, "the source has parents to reproduce"

    summary = run_import(target, file, batch=64)  # batches split parents from children
    assert (summary.lines, summary.created, summary.merged) == (exported, exported, 0)
    assert (summary.linked_later, summary.unlinked) == (0, 0), "an export lists parents first"
    store = open_store(target)
    try:
        assert graph(store) == expected
        got = vectors(store)
    finally:
        store.close()
    for triple, blob in got.items():
        assert blob is not None
        if embeddings:
            assert blob == expected_vectors[triple], "the vector's bytes come back"
        else:
            assert blob == embed_fact(*triple, DIM).astype("<f4").tobytes()
    # An engine on the imported store finds the facts (its start-up replay indexed them).
    with AllocationEngine(target) as engine:
        assert engine.stats()["nodes"] == exported
        vector = np.frombuffer(got[("s1", "p1", "o1")] or b"", dtype="<f4")
        hit = engine.search(embedding=vector, k=1)[0].node
        assert (hit.subject, hit.predicate, hit.object) == ("s1", "p1", "o1")


class Spy:
    """A store whose export pages are counted (and, with ``between``, something done
    between two of them)."""

    def __init__(self, store: Store, between: Callable[[int], None] | None = None) -> None:
        self.store, self.between, self.pages = store, between, 0

    def export_page(self, after: int, limit: int, embeddings: bool) -> list[ExportRow]:
        if self.pages and self.between is not None:
            self.between(self.pages)
        self.pages += 1
        return self.store.export_page(after, limit, embeddings)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Recorder(io.BytesIO):
    """Output that notes how many pages had been read at each write."""

    def __init__(self, spy: Spy) -> None:
        super().__init__()
        self.spy = spy
        self.reads_at_write: list[int] = []

    def write(self, data: Any) -> int:
        self.reads_at_write.append(self.spy.pages)
        return super().write(data)


@pytest.fixture
def small(tmp_path: Path) -> Iterator[AllocationEngine]:
    config = EngineConfig(data_directory=tmp_path / "small", dim=DIM, checkpoint_interval=0)
    with AllocationEngine(config) as engine:
        engine.allocate_many(
            [
                {
                    "subject": f"s{i}",
                    "predicate": "p",
                    "object": "o",
                    "confidence": 0.5,
                    "embedding": unit(i),
                }
                for i in range(250)
            ]
        )
        yield engine


def test_an_export_reads_the_store_a_page_at_a_time(
    small: AllocationEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exchange, "PAGE", 100)
    spy = Spy(small.store)
    out = Recorder(spy)
    assert export(spy, out) == 250  # type: ignore[arg-type]
    # Each page is written before the next is read: never the whole store in memory.
    assert out.reads_at_write == [1, 2, 3]
    ids = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
    assert ids == sorted(ids) and len(ids) == 250


def test_writes_during_an_export_never_show_a_fact_twice(
    small: AllocationEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exchange, "PAGE", 100)
    before = {r.node_id for r in rows(small.store)}
    added: list[int] = []
    deleted: list[int] = []

    def write(page: int) -> None:
        # Behind the cursor and ahead of it: new facts (larger ids), a delete of a fact
        # not yet exported, a raised confidence of one exported already.
        added.append(
            small.allocate(
                {
                    "subject": f"new{page}",
                    "predicate": "p",
                    "object": "o",
                    "confidence": 0.5,
                    "embedding": unit(1000 + page),
                }
            ).node_id
        )
        victim = max(before - set(deleted))
        assert small.delete(victim)
        deleted.append(victim)
        small.allocate(
            {
                "subject": "s0",
                "predicate": "p",
                "object": "o",
                "confidence": 0.9,
                "embedding": unit(0),
            }
        )

    out = io.BytesIO()
    export(Spy(small.store, write), out)  # type: ignore[arg-type]
    ids = [json.loads(line)["id"] for line in out.getvalue().splitlines()]
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert set(added) <= set(ids), "a fact written ahead of the cursor is in the export"
    assert not set(deleted) & set(ids), "a fact deleted before its page was read is not"


GOOD = '{"subject": "a", "predicate": "p", "object": "b", "confidence": 0.5, "parent": null}'
GOOD2 = '{"subject": "a", "predicate": "p", "object": "d", "confidence": 0.5}'
BAD = [
    ("not json", None, "not a JSON object"),
    ("[1, 2]", None, "Expected `object`"),
    ('{"subject": "a", "predicate": "p", "object": "c"}', "confidence", "missing"),
    (
        '{"subject": "a", "predicate": "p", "object": "c", "confidence": 1.5}',
        "confidence",
        "between 0 and 1",
    ),
    (
        '{"subject": "a", "predicate": "p", "object": "c", "confidence": "high"}',
        "confidence",
        "Expected `float`",
    ),
    (
        '{"subject": "  ", "predicate": "p", "object": "c", "confidence": 0.5}',
        "subject",
        "must not be empty",
    ),
    (
        '{"subject": "a", "predicate": "p", "object": "c", "confidence": 0.5, "colour": 1}',
        "colour",
        "unknown field",
    ),
    (
        '{"subject": "a", "predicate": "p", "object": "c", "confidence": 0.5, '
        '"parent": {"subject": "a"}}',
        "parent.predicate",
        "missing",
    ),
    (
        '{"subject": "a", "predicate": "p", "object": "c", "confidence": 0.5, '
        '"parent": {"subject": "a", "predicate": "p", "object": "c"}}',
        "parent",
        "its own parent",
    ),
    (
        '{"subject": "a", "predicate": "p", "object": "c", "confidence": 0.5, "embedding": [1, 2]}',
        "embedding",
        f"must have {DIM} values",
    ),
    ('{"id": 0, "subject": "a", "predicate": "p", "object": "c", "confidence": 0.5}', "id", ">= 1"),
    (
        '{"subject": "' + "x" * 5000 + '", "predicate": "p", "object": "c", "confidence": 0.5}',
        "subject",
        "at most 4096",
    ),
]


@pytest.mark.parametrize(("line", "field", "message"), BAD, ids=[b[1] or b[2] for b in BAD])
def test_a_bad_line_is_named_and_nothing_is_stored(
    tmp_path: Path, line: str, field: str | None, message: str
) -> None:
    config = EngineConfig(data_directory=tmp_path / "t", dim=DIM)
    file = tmp_path / "bad.ndjson"
    # Two good lines, a blank one (skipped, still counted), then the bad one: line 4.
    file.write_text(f"{GOOD}\n{GOOD2}\n\n{line}\n{GOOD}\n")
    with pytest.raises(LineError) as caught:
        run_import(config, file)
    assert (caught.value.line, caught.value.field) == (4, field)
    assert message in caught.value.message
    assert str(caught.value).startswith("line 4")
    store = open_store(config)
    assert store.count() == 0, "a bad line stores nothing, not even the lines before it"
    store.close()


def test_a_line_longer_than_any_fact_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    config = EngineConfig(data_directory=tmp_path / "t", dim=DIM, max_text_length=100)
    file = tmp_path / "long.ndjson"
    file.write_text(GOOD + "\n" + " " * 20_000 + "\n")
    with pytest.raises(LineError, match="line 2: longer than"):
        run_import(config, file)


def fact_line(s: str, confidence: float, parent: str | None = None) -> str:
    line: dict[str, Any] = {"subject": s, "predicate": "p", "object": "o", "confidence": confidence}
    if parent is not None:
        line["parent"] = {"subject": parent, "predicate": "p", "object": "o"}
    return json.dumps(line)


def test_a_store_with_facts_is_refused_unless_merging(
    configs: ConfigFactory, tmp_path: Path
) -> None:
    target = configs("target")
    with AllocationEngine(target) as engine:
        engine.place_many([json.loads(fact_line("A", 0.9)), json.loads(fact_line("B", 0.2))])
    file = tmp_path / "more.ndjson"
    file.write_text(
        "\n".join(
            [
                fact_line("X", 0.3),
                fact_line("A", 0.5, parent="X"),
                fact_line("B", 0.7),
                fact_line("C", 0.4, parent="A"),
                fact_line("C", 0.6, parent="B"),  # twice in the file: merged, its first parent kept
            ]
        )
        + "\n"
    )
    with pytest.raises(StoreNotEmptyError, match="--merge"):
        run_import(target, file)
    store = open_store(target)
    assert graph(store) == {("A", "p", "o"): (0.9, None), ("B", "p", "o"): (0.2, None)}
    store.close()
    summary = run_import(target, file, merge=True)
    assert (summary.created, summary.merged) == (2, 3)
    store = open_store(target)
    try:
        assert graph(store) == {
            ("A", "p", "o"): (0.9, None),  # kept: its confidence is the larger, its parent stays
            ("B", "p", "o"): (0.7, None),  # the larger confidence
            ("X", "p", "o"): (0.3, None),
            ("C", "p", "o"): (0.6, ("A", "p", "o")),
        }
    finally:
        store.close()


def test_parents_on_later_lines_are_linked_at_the_end_and_missing_ones_leave_roots(
    configs: ConfigFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = configs("target")
    file = tmp_path / "order.ndjson"
    file.write_text(
        "\n".join(
            [
                fact_line("C", 0.5, parent="B"),  # 1: its parent comes on line 2
                fact_line("B", 0.5, parent="A"),  # 2: and its own on line 3
                fact_line("A", 0.5),
                fact_line("D", 0.5, parent="nowhere"),  # 4: a parent in neither file nor store
                fact_line("E", 0.5, parent="F"),  # 5 and 6 name each other: one link would cycle
                fact_line("F", 0.5, parent="E"),
                fact_line("G", 0.5, parent="A"),  # 7: an earlier parent, in the same batch
            ]
        )
        + "\n"
    )
    summary = run_import(target, file, batch=4)
    assert (summary.created, summary.linked_later, summary.unlinked) == (7, 2, 2)
    assert "lines 4, 5" in caplog.text
    store = open_store(target)
    try:
        parents = {t[0]: p[0] if p else None for t, (_, p) in graph(store).items()}
    finally:
        store.close()
    assert parents == {"A": None, "B": "A", "C": "B", "D": None, "E": None, "F": "E", "G": "A"}


def test_standard_input_is_read_twice_through_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = EngineConfig(data_directory=tmp_path / "t", dim=DIM)
    data = (fact_line("C", 0.5, parent="A") + "\n\n" + fact_line("A", 0.4) + "\n").encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    summary = run_import(config, "-", spool=tmp_path)
    assert (summary.lines, summary.created, summary.linked_later) == (2, 2, 1)


def test_the_engine_places_facts_under_the_parents_they_name(configs: ConfigFactory) -> None:
    with AllocationEngine(configs("engine")) as engine:
        placed = engine.place_many(
            [
                {
                    "subject": "root",
                    "predicate": "p",
                    "object": "o",
                    "confidence": 0.5,
                    "embedding": unit(1),
                },
                {
                    "subject": "leaf",
                    "predicate": "p",
                    "object": "o",
                    "confidence": 0.7,
                    "embedding": unit(2),
                    "parent": {"subject": "root", "predicate": "p", "object": "o"},
                },
                {
                    "subject": "orphan",
                    "predicate": "p",
                    "object": "o",
                    "confidence": 0.7,
                    "parent": {"subject": "later", "predicate": "p", "object": "o"},
                },
            ]
        )
        (root, c1), (leaf, c2), (orphan, c3) = placed
        assert c1 and c2 and c3
        assert leaf.parent == root.node_id and orphan.parent is None
        # Found at once, by vector and by its built-in embedding, and by id.
        assert engine.search(embedding=unit(2), k=1)[0].node_id == leaf.node_id
        assert engine.search(text="orphan p o", k=1)[0].node_id == orphan.node_id
        got = engine.get(leaf.node_id)
        assert got is not None and got.parent == root.node_id
        # A stored triple keeps its node and parent; its confidence is the larger.
        ((again, created),) = engine.place_many(
            [{"subject": "leaf", "predicate": "p", "object": "o", "confidence": 0.9}]
        )
        assert (again.node_id, again.parent, again.confidence, created) == (
            leaf.node_id,
            root.node_id,
            0.9,
            False,
        )
        assert engine.search(embedding=unit(2), k=1, filter={"min_confidence": 0.85})
        # Relinks: refused when they would close a cycle or name a node that is not live.
        assert engine.relink(root.node_id, leaf.node_id) is None
        assert engine.relink(orphan.node_id, 10**9) is None
        linked = engine.relink(orphan.node_id, leaf.node_id)
        assert linked is not None and linked.parent == leaf.node_id
        assert [n.node_id for n in engine.ancestors(orphan.node_id)] == [leaf.node_id, root.node_id]
        with pytest.raises(FactError) as caught:
            engine.place_many(
                [
                    {
                        "subject": "x",
                        "predicate": "p",
                        "object": "o",
                        "confidence": 0.5,
                        "parent": {"subject": "y"},
                    }
                ]
            )
        assert caught.value.field == "facts[0].parent.predicate"
