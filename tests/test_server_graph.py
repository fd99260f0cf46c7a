"""The graph's routes over a real server: a few thousand facts of a small vocabulary
(seeded), and every answer checked against a plain model of the same graph: triple
patterns of every combination of fields with their pages walked to the end, entity views
and the entity listing, children and ancestors, the parent rule after deletes, and the
refusal of bad query strings."""

from __future__ import annotations

import base64
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import jsonschema
import pytest
from serverlib import Server

SUBJECTS = [f"{w}{i}" for w in ("Ann", "Bob", "Éva", "Zoë") for i in range(8)] + ["A/B", "Al"]
PREDICATES = ["knows", "likes", "is_a", "made", "has", "near"]
OBJECTS = [*SUBJECTS[::2], "cat", "dog", "bird", "A/B c", "Ann0 x"]
FACTS = 2500


@dataclass(frozen=True)
class Row:
    node_id: int
    subject: str
    predicate: str
    object: str
    confidence: float
    parent: int | None

    def json(self) -> dict[str, Any]:
        fact = {"subject": self.subject, "predicate": self.predicate, "object": self.object}
        return {
            "node_id": self.node_id,
            "fact": {**fact, "confidence": self.confidence},
            "parent": self.parent,
        }


@dataclass
class Graph:
    server: Server
    openapi: dict[str, Any]
    model: dict[int, Row]

    def get(self, path: str, template: str, **params: Any) -> Any:
        response = self.server.client.get(path, params=params)
        check_against_openapi(self.openapi, template, response)
        assert response.status_code == 200, response.text
        return response.json()

    def walk(self, path: str, template: str, key: str, **params: Any) -> list[Any]:
        """Every item of a paginated listing, following next_cursor to the end."""
        items: list[Any] = []
        cursor = None
        while True:
            extra = {"cursor": cursor} if cursor else {}
            body = self.get(path, template, **params, **extra)
            items += body[key]
            cursor = body["next_cursor"]
            if cursor is None:
                return items
            assert body[key], "a page with a next cursor is never empty"


def check_against_openapi(doc: dict[str, Any], template: str, response: Any) -> None:
    documented = doc["paths"][template]["get"]["responses"].get(str(response.status_code))
    assert documented is not None, f"{template} answered undocumented {response.status_code}"
    schema = documented["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {"components": doc["components"], **schema})


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Graph]:
    # Every node but the first gets a parent (its nearest node): a deep hierarchy.
    env = {"LLMKG__ALLOCATION__SIMILARITY_THRESHOLD": "-1"}
    with Server(tmp_path_factory.mktemp("graph"), env) as server:
        rng = random.Random(7)
        model: dict[int, Row] = {}
        for _ in range(FACTS // 500):
            facts = [
                {
                    "subject": rng.choice(SUBJECTS),
                    "predicate": rng.choice(PREDICATES),
                    "object": rng.choice(OBJECTS),
                    "confidence": round(rng.random(), 3),
                }
                for _ in range(500)
            ]
            response = server.post("/api/v1/allocate/batch", {"facts": facts})
            assert response.status_code == 200, response.text
            for f, r in zip(facts, response.json()["results"], strict=True):
                if r["created"]:
                    parent = r["parent"]["node_id"] if r["parent"] else None
                    model[r["node_id"]] = Row(
                        r["node_id"],
                        f["subject"],
                        f["predicate"],
                        f["object"],
                        r["confidence"],
                        parent,
                    )
                else:
                    model[r["node_id"]] = replace(model[r["node_id"]], confidence=r["confidence"])
        openapi = server.client.get("/openapi.json").json()
        yield Graph(server, openapi, model)


def matching(model: dict[int, Row], **fields: Any) -> list[dict[str, Any]]:
    least = fields.pop("min_confidence", None)
    rows = [
        r
        for r in model.values()
        if all(getattr(r, k) == v for k, v in fields.items())
        and (least is None or r.confidence >= least)
    ]
    return [r.json() for r in sorted(rows, key=lambda r: r.node_id)]


def test_patterns_of_every_combination_walk_to_the_model(graph: Graph) -> None:
    rng = random.Random(8)
    samples = rng.sample(sorted(graph.model.values(), key=lambda r: r.node_id), 3)
    everything = graph.walk("/api/v1/facts", "/api/v1/facts", "facts", limit=1000)
    assert everything == matching(graph.model) and len(everything) > 1500
    for sample in samples:
        for size in range(4):
            for names in itertools.combinations(("subject", "predicate", "object"), size):
                fields = {n: getattr(sample, n) for n in names}
                got = graph.walk("/api/v1/facts", "/api/v1/facts", "facts", limit=37, **fields)
                assert got == matching(graph.model, **fields), fields
                assert got, "a sample's own fields match at least the sample"
    got = graph.walk(
        "/api/v1/facts", "/api/v1/facts", "facts", predicate="likes", min_confidence=0.8
    )
    assert got == matching(graph.model, predicate="likes", min_confidence=0.8)
    # The canonical form: a pattern is trimmed and collapsed like a stored fact.
    spaced = graph.get("/api/v1/facts", "/api/v1/facts", subject="  Ann1 ", limit=1000)
    assert spaced["facts"] == matching(graph.model, subject="Ann1")[:1000]
    none = graph.get("/api/v1/facts", "/api/v1/facts", subject="nobody")
    assert none == {"facts": [], "next_cursor": None}


def test_entity_views_and_the_entity_listing(graph: Graph) -> None:
    names = sorted(
        {r.subject for r in graph.model.values()} | {r.object for r in graph.model.values()}
    )
    for prefix in ("", "A", "Ann", "É", "Zoë1", "A/B", "nobody"):
        got = graph.walk("/api/v1/entities", "/api/v1/entities", "entities", prefix=prefix, limit=7)
        assert got == [n for n in names if n.startswith(prefix)], prefix
    template = "/api/v1/entities/{name}"
    for name in ("Ann0", "Bob3", "cat", "A/B", "Zoë4", "A/B c"):
        path = f"/api/v1/entities/{quote(name, safe='')}"
        counts: dict[str, int] = {}
        for r in graph.model.values():
            if name in (r.subject, r.object):
                counts[r.predicate] = counts.get(r.predicate, 0) + 1
        walked: dict[str, list[Any]] = {}
        for role in ("subject", "object"):
            # Each list has its own cursor: walk one, the other stays at its first page.
            walked[role], params = [], {}
            while True:
                body = graph.get(path, template, limit=9, **params)
                assert body["name"] == name and body["predicates"] == counts
                walked[role] += body[f"as_{role}"]
                cursor = body[f"as_{role}_next_cursor"]
                if cursor is None:
                    break
                params = {f"{role}_cursor": cursor}
        as_subject, as_object = walked["subject"], walked["object"]
        assert as_subject == matching(graph.model, subject=name), name
        assert as_object == matching(graph.model, object=name), name
    missing = graph.server.client.get("/api/v1/entities/nobody")
    check_against_openapi(graph.openapi, template, missing)
    assert missing.status_code == 404 and missing.json()["error"]["field"] == "name"


def chain(model: dict[int, Row], node_id: int) -> list[dict[str, Any]]:
    out, up = [], model[node_id].parent
    while up is not None:
        out.append(model[up].json())
        up = model[up].parent
    return out


def check_hierarchy(graph: Graph, ids: list[int]) -> None:
    for node_id in ids:
        kids = [
            r.json()
            for r in sorted(graph.model.values(), key=lambda r: r.node_id)
            if r.parent == node_id
        ]
        path = f"/api/v1/nodes/{node_id}/children"
        got = graph.walk(path, "/api/v1/nodes/{node_id}/children", "children", limit=3)
        assert got == kids, node_id
        body = graph.get(f"/api/v1/nodes/{node_id}/ancestors", "/api/v1/nodes/{node_id}/ancestors")
        assert body == {"node_id": node_id, "ancestors": chain(graph.model, node_id)[:1000]}
        node = graph.server.client.get(f"/api/v1/nodes/{node_id}").json()
        assert node["parent"] == graph.model[node_id].parent


def test_children_and_ancestors(graph: Graph) -> None:
    rng = random.Random(9)
    ids = sorted(graph.model)
    # The first nodes have the most children; later ones the longest chains.
    check_hierarchy(graph, ids[:10] + rng.sample(ids, 30))
    some = ids[-1]
    two = graph.get(
        f"/api/v1/nodes/{some}/ancestors", "/api/v1/nodes/{node_id}/ancestors", max_depth=2
    )
    assert two["ancestors"] == chain(graph.model, some)[:2]


def test_bad_query_strings_name_their_field(graph: Graph) -> None:
    client = graph.server.client
    other = base64.urlsafe_b64encode(b"eAnn0").decode().rstrip("=")
    huge = base64.urlsafe_b64encode(b"n9007199254740992").decode().rstrip("=")
    cases = [
        ("/api/v1/facts", {"cursor": "!!"}, "cursor"),
        ("/api/v1/facts", {"cursor": "bm90IGFuIGlk"}, "cursor"),  # "not an id"
        ("/api/v1/facts", {"cursor": other}, "cursor"),  # an entity listing's cursor
        ("/api/v1/facts", {"cursor": huge}, "cursor"),
        ("/api/v1/facts", {"cursor": "x"}, "cursor"),
        ("/api/v1/facts", {"limit": "0"}, "limit"),
        ("/api/v1/facts", {"limit": "1001"}, "limit"),
        ("/api/v1/facts", {"limit": "ten"}, "limit"),
        ("/api/v1/facts", {"limit": "\uff11\uff10"}, "limit"),
        ("/api/v1/facts", {"min_confidence": "1.5"}, "min_confidence"),
        ("/api/v1/facts", {"min_confidence": "nan"}, "min_confidence"),
        ("/api/v1/facts", {"subject": "   "}, "subject"),
        ("/api/v1/facts", {"subject": "x" * 5000}, "subject"),
        ("/api/v1/facts", {"colour": "red"}, "colour"),
        ("/api/v1/facts", [("subject", "a"), ("subject", "b")], "subject"),
        ("/api/v1/entities", {"cursor": "bkFubjA"}, "cursor"),  # a fact listing's cursor
        ("/api/v1/entities", {"limit": "-1"}, "limit"),
        ("/api/v1/entities", {"k": "1"}, "k"),
        ("/api/v1/entities/Ann0", {"subject_cursor": "??"}, "subject_cursor"),
        ("/api/v1/entities/Ann0", {"object_cursor": other}, "object_cursor"),
        ("/api/v1/entities/Ann0", {"cursor": "bjE"}, "cursor"),
        ("/api/v1/entities/%20", {}, "name"),
        ("/api/v1/nodes/1/children", {"cursor": other}, "cursor"),
        ("/api/v1/nodes/1/children", {"limit": "100000000000000000000"}, "limit"),
        ("/api/v1/nodes/0/children", {}, "node_id"),
        ("/api/v1/nodes/1/ancestors", {"max_depth": "0"}, "max_depth"),
        ("/api/v1/nodes/1/ancestors", {"limit": "5"}, "limit"),
        ("/api/v1/nodes/abc/ancestors", {}, "node_id"),
    ]
    for path, params, field in cases:
        response = client.get(path, params=params)
        assert response.status_code == 422, (path, params, response.text)
        assert response.json()["error"]["field"] == field, (path, params, response.text)
    for path in (
        "/api/v1/nodes/9007199254740991/children",
        "/api/v1/nodes/9007199254740991/ancestors",
    ):
        response = client.get(path)
        assert response.status_code == 404 and response.json()["error"]["field"] == "node_id"


def test_deletes_hand_children_to_the_grandparent(graph: Graph) -> None:
    rng = random.Random(10)
    ids = sorted(graph.model)
    # The roots' first children and a random spread: nodes with children and without.
    victims = ids[1:20] + rng.sample(ids[20:], 200)
    moved = 0
    for victim in victims:
        response = graph.server.client.delete(f"/api/v1/nodes/{victim}")
        assert response.status_code == 200, response.text
        gone = graph.model.pop(victim)
        for node_id, row in list(graph.model.items()):
            if row.parent == victim:
                graph.model[node_id] = replace(row, parent=gone.parent)
                moved += 1
    assert moved > 100, "the deletes re-parented many nodes"
    live = graph.walk("/api/v1/facts", "/api/v1/facts", "facts", limit=1000)
    assert live == matching(graph.model)
    parents = {f["parent"] for f in live} - {None}
    assert parents <= {f["node_id"] for f in live}, "no live node names a deleted parent"
    grandparents = sorted({graph.model[v].node_id for v in parents if v in graph.model})
    check_hierarchy(graph, grandparents[:20] + rng.sample(sorted(graph.model), 20))
    gone = graph.server.client.get(f"/api/v1/nodes/{victims[0]}/children")
    assert gone.status_code == 404
