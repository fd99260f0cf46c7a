"""Traversals and graph-expanded search over a real server, on each store: a seeded graph
allocated through the API (some facts deleted), answers compared with a plain BFS over
the same facts and checked against the OpenAPI document, and bad bodies refused with a
422 that names the field."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from graphmodel import Row, bfs, expected_expansion
from serverlib import Server

ENTITIES = [f"e{i}" for i in range(40)] + ["Zoë", "A/B c"]
PREDICATES = ["knows", "likes", "near", "made"]


@dataclass
class Graph:
    server: Server
    openapi: dict[str, Any]
    model: dict[int, Row]

    def post(self, path: str, body: Any) -> Any:
        response = self.server.post(path, body)
        check_against_openapi(self.openapi, path, response)
        assert response.status_code == 200, response.text
        return response.json()


def check_against_openapi(doc: dict[str, Any], path: str, response: Any) -> None:
    documented = doc["paths"][path]["post"]["responses"].get(str(response.status_code))
    assert documented is not None, f"{path} answered undocumented {response.status_code}"
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {"components": doc["components"], **schema})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def graph(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Graph]:
    env = {}
    if request.param == "postgresql":
        dsn = request.getfixturevalue("pg_cluster").create_database()
        env = {"LLMKG__STORAGE__BACKEND": "postgresql", "LLMKG__STORAGE__POSTGRESQL__DSN": dsn}
    with Server(tmp_path_factory.mktemp(f"traverse-{request.param}"), env) as server:
        rng = random.Random(31)
        triples = sorted(
            {
                (rng.choice(ENTITIES), rng.choice(PREDICATES), rng.choice(ENTITIES))
                for _ in range(400)
            }
        )
        rng.shuffle(triples)
        facts = [
            {"subject": s, "predicate": p, "object": o, "confidence": 0.5} for s, p, o in triples
        ]
        model: dict[int, Row] = {}
        for first in range(0, len(facts), 100):
            batch = facts[first : first + 100]
            response = server.post("/api/v1/allocate/batch", {"facts": batch})
            assert response.status_code == 200, response.text
            for f, r in zip(batch, response.json()["results"], strict=True):
                model[r["node_id"]] = Row(r["node_id"], f["subject"], f["predicate"], f["object"])
        for victim in rng.sample(sorted(model), 40):
            assert server.client.delete(f"/api/v1/nodes/{victim}").status_code == 200
            del model[victim]
        openapi = server.client.get("/openapi.json").json()
        yield Graph(server, openapi, model)


def test_traversals_match_the_model(graph: Graph) -> None:
    rng = random.Random(32)
    names = sorted({r.subject for r in graph.model.values()})
    starts: list[dict[str, Any]] = [
        {"entities": ["e3"]},
        {"entities": ["Zoë", " A/B  c ", "nobody"]},
        {"nodes": rng.sample(sorted(graph.model), 2)},
    ]
    for start, direction, predicates, hops in itertools.product(
        starts, ("out", "in", "both"), (None, ["likes", "made"]), (1, 2, 3)
    ):
        entities = start.get("entities")
        if entities is not None:
            entities = [" ".join(e.split()) for e in entities]
        want = bfs(graph.model, entities, start.get("nodes"), hops, direction, predicates)
        for max_facts in (1000, 10):
            body: dict[str, Any] = {
                "start": start,
                "hops": hops,
                "direction": direction,
                "max_facts": max_facts,
            }
            if predicates is not None:
                body["predicates"] = predicates
            got = graph.post("/api/v1/traverse", body)
            assert [(f["hop"], f["node_id"]) for f in got["facts"]] == want[:max_facts], body
            assert got["truncated"] == (len(want) > max_facts) and got["capped"] is False
            for f in got["facts"]:
                row = graph.model[f["node_id"]]
                assert (f["fact"]["subject"], f["fact"]["object"]) == (row.subject, row.object)
    # The defaults: out, one hop, 100 facts.
    got = graph.post("/api/v1/traverse", {"start": {"entities": names[:1]}})
    want = bfs(graph.model, names[:1], None, 1, "out", None)
    assert [(f["hop"], f["node_id"]) for f in got["facts"]] == want[:100]


def test_search_expansion_over_http(graph: Graph) -> None:
    for query, expand in [
        ({"text": "e1 knows e2", "k": 5}, {"hops": 1}),
        ({"text": "e7 likes", "k": 10}, {"hops": 2, "max_facts": 40}),
        ({"text": "Zoë", "k": 3}, {"hops": 2, "max_facts": 200, "predicates": ["near"]}),
    ]:
        plain = graph.post("/api/v1/search", {"query": query})
        assert set(plain) == {"results"}, "without expand the answer is as it was"
        found = graph.post("/api/v1/search", {"query": {**query, "expand": expand}})
        assert found["results"] == plain["results"]
        hits = [h["node_id"] for h in found["results"]]
        want, truncated = expected_expansion(
            graph.model,
            hits,
            expand.get("hops", 1),  # type: ignore[arg-type]
            expand.get("max_facts", 50),  # type: ignore[arg-type]
            expand.get("predicates"),  # type: ignore[arg-type]
        )
        got = [(e["source"], e["hop"], e["node_id"]) for e in found["expanded"]]
        assert got == want and found["truncated"] == truncated and found["capped"] is False
        assert got, "each case reaches something"


def test_bad_bodies_name_their_field(graph: Graph) -> None:
    one = {"entities": ["e1"]}
    cases: list[tuple[str, Any, str]] = [
        ("/api/v1/traverse", {"start": one, "hops": 0}, "hops"),
        ("/api/v1/traverse", {"start": one, "hops": 4}, "hops"),
        ("/api/v1/traverse", {"start": one, "hops": "2"}, "hops"),
        ("/api/v1/traverse", {"start": one, "hops": 1.5}, "hops"),
        ("/api/v1/traverse", {"start": one, "max_facts": 1001}, "max_facts"),
        ("/api/v1/traverse", {"start": one, "max_facts": 0}, "max_facts"),
        ("/api/v1/traverse", {"start": one, "max_facts": None}, "max_facts"),
        ("/api/v1/traverse", {"start": one, "direction": "up"}, "direction"),
        ("/api/v1/traverse", {"start": one, "predicates": []}, "predicates"),
        ("/api/v1/traverse", {"start": one, "predicates": [""]}, "predicates[0]"),
        ("/api/v1/traverse", {"start": one, "predicates": "likes"}, "predicates"),
        ("/api/v1/traverse", {"start": one, "depth": 2}, "depth"),
        ("/api/v1/traverse", {"hops": 1}, "start"),
        ("/api/v1/traverse", {"start": {}}, "start"),
        ("/api/v1/traverse", {"start": "e1"}, "start"),
        ("/api/v1/traverse", {"start": {"entities": ["e1"], "nodes": [1]}}, "start"),
        ("/api/v1/traverse", {"start": {"entities": []}}, "start.entities"),
        ("/api/v1/traverse", {"start": {"entities": ["e"] * 101}}, "start.entities"),
        ("/api/v1/traverse", {"start": {"entities": ["e1", "  "]}}, "start.entities[1]"),
        ("/api/v1/traverse", {"start": {"entities": [7]}}, "start.entities[0]"),
        ("/api/v1/traverse", {"start": {"nodes": []}}, "start.nodes"),
        ("/api/v1/traverse", {"start": {"nodes": [0]}}, "start.nodes[0]"),
        ("/api/v1/traverse", {"start": {"nodes": ["1"]}}, "start.nodes[0]"),
        ("/api/v1/traverse", {"start": {"nodes": [2**53]}}, "start.nodes[0]"),
        ("/api/v1/traverse", {"start": {"names": ["e1"]}}, "start.names"),
        ("/api/v1/search", {"query": {"text": "e1", "expand": {"hops": 3}}}, "query.expand.hops"),
        (
            "/api/v1/search",
            {"query": {"text": "e1", "expand": {"max_facts": 201}}},
            "query.expand.max_facts",
        ),
        (
            "/api/v1/search",
            {"query": {"text": "e1", "expand": {"predicates": [" "]}}},
            "query.expand.predicates[0]",
        ),
        ("/api/v1/search", {"query": {"text": "e1", "expand": {"far": 1}}}, "query.expand.far"),
        ("/api/v1/search", {"query": {"text": "e1", "expand": 2}}, "query.expand"),
    ]
    for path, body, field in cases:
        response = graph.server.post(path, body)
        check_against_openapi(graph.openapi, path, response)
        assert response.status_code == 422, (body, response.text)
        error = response.json()["error"]
        assert (error["code"], error["field"]) == ("invalid_field", field), (body, error)
    not_json = graph.server.client.post(
        "/api/v1/traverse", content=b"{", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400


def test_the_openapi_document_describes_traverse_and_expand(graph: Graph) -> None:
    operation = graph.openapi["paths"]["/api/v1/traverse"]["post"]
    assert operation["requestBody"]["required"] is True
    schemas = graph.openapi["components"]["schemas"]
    assert set(schemas["TraverseRequest"]["properties"]) == {
        "start",
        "hops",
        "direction",
        "predicates",
        "max_facts",
    }
    assert "expand" in schemas["SearchQuery"]["properties"]
    assert schemas["SearchResponse"]["required"] == ["results"]
    jsonschema.Draft202012Validator.check_schema(schemas["TraverseRequest"])
