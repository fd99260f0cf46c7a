"""``llmkg.Client`` and ``llmkg.AsyncClient`` on traversals, graph-expanded search and the
NDJSON export, against a real server: the graph is written by an engine in-process (some
facts deleted, so that children change parent), which records its own answers; the
server then serves the same data directory, and the client's answers must be the
engine's, struct for struct. Also: search hits carry their parent, a bad argument is a
``ValidationError`` naming the field, and an export streams every fact (with and without
the vectors) as ``GET /api/v1/nodes/{id}`` reads it. (The export's retry rule against
scripted answers: test_client_retry.py.)"""

from __future__ import annotations

import dataclasses
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from serverlib import Server

import llmkg
from llmkg.client import ValidationError, calls
from llmkg.config import engine_config, load_settings
from llmkg.engine import AllocationEngine, ExpandedSearch, SearchHit, Traversal, exchange
from llmkg.engine.exchange import ExportedFact

OPEN = {
    "LLMKG__SECURITY__AUTHENTICATION__TYPE": "none",
    "LLMKG__SECURITY__RATE_LIMIT__ENABLED": "false",
    "LLMKG__ALLOCATION__SIMILARITY_THRESHOLD": "-1.0",  # every node but the first has a parent
}
ENTITIES = [f"e{i}" for i in range(30)] + ["Zoë", "A/B c"]
PREDICATES = ["knows", "likes", "near", "made"]
SEARCHES: list[dict[str, Any]] = [
    {"text": "e1 knows e2", "k": 5},
    {"text": "e1 knows e2", "k": 5, "expand": {}},  # the server's defaults
    {"text": "e7 likes", "k": 10, "expand": {"hops": 2, "max_facts": 40}},
    {"text": "Zoë", "k": 3, "expand": {"hops": 2, "max_facts": 200, "predicates": ("near",)}},
    {"text": "e3", "k": 8, "filter": {"predicate": "likes"}, "expand": {"hops": 2, "max_facts": 5}},
]


def traversals(live: list[int]) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {"entities": ["e3"]},
        {"entities": ["e3"], "hops": 3, "direction": "both", "max_facts": 1000},
        {"entities": ("Zoë", " A/B  c ", "nobody"), "hops": 2, "direction": "in"},
        {"entities": ["e1", "e2"], "hops": 2, "predicates": ["likes", "made"]},
        {"entities": ["e5"], "hops": 3, "direction": "both", "max_facts": 7},
        {"nodes": rng.sample(live, 3), "hops": 2, "direction": "both"},
        {"nodes": [live[0], 2**40], "direction": "in", "predicates": ["near"]},
        {"nodes": range(1, 9), "direction": "out"},  # any sequence, as the engine takes
    ]


@dataclass
class Served:
    server: Server
    traversals: list[tuple[dict[str, Any], Traversal]]
    searches: list[tuple[dict[str, Any], list[SearchHit] | ExpandedSearch]]
    exports: dict[bool, list[ExportedFact]]  # by "with embeddings"


def engine_export(engine: AllocationEngine, embeddings: bool) -> list[ExportedFact]:
    out = io.BytesIO()
    exchange.export(engine.store, out, embeddings)
    decoder = msgspec.json.Decoder(ExportedFact)
    return [decoder.decode(line) for line in out.getvalue().splitlines()]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Server(tmp_path_factory.mktemp("client-graph"), env=OPEN)
    # The engine the server will run, on the same data directory, before the server.
    engine = AllocationEngine(engine_config(load_settings(environ=server.env)))
    try:
        rng = random.Random(5)
        triples = sorted(
            {
                (rng.choice(ENTITIES), rng.choice(PREDICATES), rng.choice(ENTITIES))
                for _ in range(300)
            }
        )
        rng.shuffle(triples)
        made = engine.allocate_many(
            [{"subject": s, "predicate": p, "object": o, "confidence": 0.5} for s, p, o in triples]
        )
        ids = [r.node_id for r in made]
        for victim in rng.sample(ids, 30):
            assert engine.delete(victim)
        live = [i for i in ids if engine.get(i) is not None]
        recorded = Served(
            server,
            [(case, engine.traverse(**case)) for case in traversals(live)],
            [(case, engine.search(**case)) for case in SEARCHES],
            {e: engine_export(engine, e) for e in (False, True)},
        )
    finally:
        engine.close()
    with server:
        yield recorded


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[llmkg.Client]:
    with llmkg.Client(served.server.url) as c:
        yield c


# ---- what the engine answers ---------------------------------------------------------------


def test_traversals_are_the_engines(served: Served, client: llmkg.Client) -> None:
    for case, want in served.traversals:
        got = client.traverse(**case)
        assert isinstance(got, Traversal) and got == want, case
    hops = {r.hop for _, t in served.traversals for r in t.facts}
    assert hops == {0, 1, 2, 3}, "the cases reach every hop"
    assert any(t.truncated for _, t in served.traversals)
    assert any(r.node.parent is not None for _, t in served.traversals for r in t.facts)


def test_searches_are_the_engines(served: Served, client: llmkg.Client) -> None:
    for case, want in served.searches:
        got = client.search(**case)
        assert type(got) is type(want) and got == want, case
    expanded = [s for _, s in served.searches if isinstance(s, ExpandedSearch)]
    assert all(s.expanded for s in expanded) and any(s.truncated for s in expanded)


def test_search_hits_carry_their_parent(served: Served, client: llmkg.Client) -> None:
    hits = client.search(text="e1 knows e2", k=50)
    assert sum(1 for h in hits if h.node.parent is not None) >= 49
    for h in hits:
        assert client.get(h.node_id) == h.node  # the parent too, after the deletes
    found = client.search(text="e1 knows e2", k=50, expand={"max_facts": 1})
    assert found.hits == hits


def test_an_export_streams_every_fact_as_the_nodes_read(
    served: Served, client: llmkg.Client
) -> None:
    plain = list(client.export())
    assert plain == served.exports[False] and all(f.embedding is None for f in plain)
    full = list(client.export(embedding=True))
    assert full == served.exports[True], "the vectors as stored, over 3 pages"
    assert len(full) > 2 * exchange.EMBEDDING_PAGE
    assert [f.embedding is not None and len(f.embedding) == 16 for f in full] == [True] * len(full)
    by_id = {f.id: f for f in plain}
    for f in plain:
        node = client.get(f.id)
        assert node is not None
        assert (node.subject, node.predicate, node.object) == (f.subject, f.predicate, f.object)
        assert node.confidence == f.confidence
        if f.parent is None:
            assert node.parent is None
        else:
            assert node.parent == f.parent.id
            parent = by_id[f.parent.id]
            assert (parent.subject, parent.predicate, parent.object) == (
                f.parent.subject,
                f.parent.predicate,
                f.parent.object,
            )


def busy_connections(client: llmkg.Client) -> int:
    pool = client._http._transport._pool  # type: ignore[attr-defined]  # httpcore's
    return sum(1 for c in pool.connections if not (c.is_idle() or c.is_closed()))


def test_an_export_left_early_gives_its_connection_back(client: llmkg.Client) -> None:
    facts = client.export(embedding=True)
    first = [next(facts) for _ in range(3)]
    assert busy_connections(client) == 1  # the export's, mid-answer
    facts.close()  # what dropping a `for` loop's iterator after `break` does
    assert busy_connections(client) == 0
    assert [f.id for f in first] == sorted(f.id for f in first)
    assert client.get(first[0].id) is not None


# ---- bad arguments -------------------------------------------------------------------------

E1 = ["e1"]


@pytest.mark.parametrize(
    ("send", "field"),
    [
        (lambda c: c.traverse(), "start"),
        (lambda c: c.traverse(entities=E1, nodes=[1]), "start"),
        (lambda c: c.traverse(entities="e1"), "start.entities"),
        (lambda c: c.traverse(entities=[]), "start.entities"),
        (lambda c: c.traverse(nodes=[3, 0]), "start.nodes[1]"),
        (lambda c: c.traverse(entities=E1, hops=4), "hops"),
        (lambda c: c.traverse(entities=E1, direction="up"), "direction"),
        (lambda c: c.traverse(entities=E1, predicates=[]), "predicates"),
        (lambda c: c.traverse(entities=E1, max_facts=1001), "max_facts"),
        (lambda c: c.search(text="x", expand={"hops": 3}), "query.expand.hops"),
        (lambda c: c.search(text="x", expand={"max_facts": 0}), "query.expand.max_facts"),
        (lambda c: c.search(text="x", expand={"predicates": "near"}), "query.expand.predicates"),
        (lambda c: c.search(text="x", expand={"colour": "red"}), "query.expand.colour"),
    ],
)
def test_bad_arguments_are_validation_errors_naming_the_field(
    client: llmkg.Client, send: Any, field: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        send(client)
    error = raised.value
    assert (error.status, error.code, error.field) == (422, "invalid_field", field)


def test_a_bad_export_parameter_is_refused_before_the_first_line(client: llmkg.Client) -> None:
    call = dataclasses.replace(calls.export(False), params=(("embedding", "yes"),))
    with pytest.raises(ValidationError) as raised:
        list(client._stream(call))
    assert raised.value.field == "embedding"


# ---- the same, async -----------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_async_answers_are_the_engines(served: Served) -> None:
    async with llmkg.AsyncClient(served.server.url) as c:
        for case, want in served.traversals:
            assert await c.traverse(**case) == want, case
        for case, want in served.searches:
            got = await c.search(**case)
            assert type(got) is type(want) and got == want, case
        assert [f async for f in c.export()] == served.exports[False]
        assert [f async for f in c.export(embedding=True)] == served.exports[True]
        with pytest.raises(ValidationError) as raised:
            await c.traverse(entities=E1, hops=0)
        assert raised.value.field == "hops"
        with pytest.raises(ValidationError) as raised:
            await c.search(text="x", expand={"hops": 0})
        assert raised.value.field == "query.expand.hops"
