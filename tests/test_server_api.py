"""The HTTP API over a real server process: every route, idempotency, deletes, filters,
batches in order, the admin routes, request ids in headers and the access log, and
responses that match the OpenAPI document."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from serverlib import Server, fact

from llmkg.engine import restore


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("api")) as s:
        yield s


@pytest.fixture(scope="module")
def openapi(server: Server) -> dict[str, Any]:
    response = server.client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def check_against_openapi(doc: dict[str, Any], method: str, path: str, response: Any) -> None:
    """The response's status is documented for the route and its body fits the schema."""
    operation = doc["paths"][path][method]
    documented = operation["responses"].get(str(response.status_code))
    assert documented is not None, f"{method} {path} answered undocumented {response.status_code}"
    schema = documented["content"]["application/json"]["schema"]
    resolver = {"components": doc["components"], **schema}
    jsonschema.validate(response.json(), resolver)


def test_allocate_then_get_search_delete(server: Server, openapi: dict[str, Any]) -> None:
    created = server.post("/api/v1/allocate", {"fact": fact(1, confidence=0.4)})
    assert created.status_code == 200, created.text
    check_against_openapi(openapi, "post", "/api/v1/allocate", created)
    body = created.json()
    assert body["created"] and 1 <= body["node_id"] < 2**53
    assert body["strategy"] == "direct" and body["partition"] == 0
    node_id = body["node_id"]

    again = server.post("/api/v1/allocate", {"fact": fact(1, confidence=0.9)})
    assert again.status_code == 200
    assert again.json()["node_id"] == node_id and not again.json()["created"]
    assert again.json()["confidence"] == 0.9

    got = server.client.get(f"/api/v1/nodes/{node_id}")
    check_against_openapi(openapi, "get", "/api/v1/nodes/{node_id}", got)
    assert got.json()["fact"] == {
        "subject": "s1",
        "predicate": "p",
        "object": "o1",
        "confidence": 0.9,
    }

    search = server.post("/api/v1/search", {"query": {"embedding": fact(1)["embedding"], "k": 5}})
    check_against_openapi(openapi, "post", "/api/v1/search", search)
    top = search.json()["results"][0]
    assert top["node_id"] == node_id and top["score"] == pytest.approx(1.0, abs=1e-5)
    assert top["fact"] == got.json()["fact"] and top["parent"] == got.json()["parent"]

    deleted = server.client.delete(f"/api/v1/nodes/{node_id}")
    check_against_openapi(openapi, "delete", "/api/v1/nodes/{node_id}", deleted)
    assert deleted.json() == {"node_id": node_id, "deleted": True}
    for response in (
        server.client.delete(f"/api/v1/nodes/{node_id}"),
        server.client.get(f"/api/v1/nodes/{node_id}"),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
        check_against_openapi(
            openapi, response.request.method.lower(), "/api/v1/nodes/{node_id}", response
        )
    search = server.post("/api/v1/search", {"query": {"embedding": fact(1)["embedding"], "k": 5}})
    assert node_id not in [r["node_id"] for r in search.json()["results"]]


def test_batch_results_come_back_in_input_order(server: Server, openapi: dict[str, Any]) -> None:
    facts = [fact(i) for i in range(100, 140)]
    facts.insert(10, fact(105))  # a repeat inside the batch: the same node, not created
    response = server.post("/api/v1/allocate/batch", {"facts": facts})
    assert response.status_code == 200, response.text
    check_against_openapi(openapi, "post", "/api/v1/allocate/batch", response)
    results = response.json()["results"]
    assert len(results) == len(facts)
    assert results[10]["node_id"] == results[5]["node_id"] and not results[10]["created"]
    for f, r in zip(facts, results, strict=True):
        node = server.client.get(f"/api/v1/nodes/{r['node_id']}").json()
        assert node["fact"]["subject"] == f["subject"]


def test_search_by_text_with_filters(server: Server) -> None:
    facts = [
        {"subject": "Paris", "predicate": "capital_of", "object": "France", "confidence": 0.9},
        {"subject": "Lyon", "predicate": "city_in", "object": "France", "confidence": 0.3},
        {"subject": "Berlin", "predicate": "capital_of", "object": "Germany", "confidence": 0.8},
    ]
    ids = [
        r["node_id"]
        for r in server.post("/api/v1/allocate/batch", {"facts": facts}).json()["results"]
    ]

    def search(**query: Any) -> list[int]:
        response = server.post(
            "/api/v1/search", {"query": {"text": "capital of France", "k": 50, **query}}
        )
        assert response.status_code == 200, response.text
        scores = [r["score"] for r in response.json()["results"]]
        assert scores == sorted(scores, reverse=True), "best first"
        return [r["node_id"] for r in response.json()["results"]]

    assert set(ids) <= set(search())
    assert set(search(filter={"object": "France"})) == {ids[0], ids[1]}
    assert set(search(filter={"predicate": "capital_of", "min_confidence": 0.85})) == {ids[0]}
    assert search(filter={"subject": "Nowhere"}) == []
    assert set(search(filter={"object": "France"}, ef=64)) == {ids[0], ids[1]}


def test_stats_and_admin_routes(server: Server, openapi: dict[str, Any]) -> None:
    server.post("/api/v1/allocate", {"fact": fact(500)})
    stats = server.client.get("/api/v1/stats")
    check_against_openapi(openapi, "get", "/api/v1/stats", stats)
    assert stats.json()["nodes"] >= 1 and "startup" in stats.json()
    checkpoint = server.client.post("/api/v1/admin/checkpoint")
    check_against_openapi(openapi, "post", "/api/v1/admin/checkpoint", checkpoint)
    assert checkpoint.json()["sequence"] >= 1
    backup = server.client.post("/api/v1/admin/backup")
    check_against_openapi(openapi, "post", "/api/v1/admin/backup", backup)
    folder = Path(backup.json()["path"])
    assert folder.parent == server.tmp / "backups"
    restored = server.tmp / "restored"
    manifest = restore(folder, restored)
    assert manifest["nodes"] == backup.json()["nodes"] == stats.json()["nodes"]


def test_probes_and_openapi_describe_every_route(server: Server, openapi: dict[str, Any]) -> None:
    for probe in ("live", "ready"):
        response = server.client.get(f"/health/{probe}")
        assert response.status_code == 200
        check_against_openapi(openapi, "get", f"/health/{probe}", response)
    assert response.json()["partition"]["mode"] == "single-partition"
    routes = {(m.upper(), p) for p, ops in openapi["paths"].items() for m in ops}
    assert routes >= {
        ("POST", "/api/v1/allocate"),
        ("POST", "/api/v1/allocate/batch"),
        ("POST", "/api/v1/search"),
        ("GET", "/api/v1/nodes/{node_id}"),
        ("DELETE", "/api/v1/nodes/{node_id}"),
        ("GET", "/api/v1/nodes/{node_id}/children"),
        ("GET", "/api/v1/nodes/{node_id}/ancestors"),
        ("GET", "/api/v1/facts"),
        ("GET", "/api/v1/entities"),
        ("GET", "/api/v1/entities/{name}"),
        ("POST", "/api/v1/traverse"),
        ("GET", "/api/v1/stats"),
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
    }
    jsonschema.Draft202012Validator.check_schema(openapi["components"]["schemas"]["SearchRequest"])


def access_lines(server: Server, request_id: str, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The access log lines of ``request_id`` (written once the response is sent: waited for)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]
        found = [
            line
            for line in lines
            if line["logger"] == "llmkg.access" and line.get("request_id") == request_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_request_ids_are_echoed_or_made_and_carried_by_the_access_log(server: Server) -> None:
    given = server.client.post(
        "/api/v1/allocate", json={"fact": fact(70)}, headers={"X-Request-ID": "trace-70.a_b"}
    )
    assert given.status_code == 200 and given.headers["x-request-id"] == "trace-70.a_b"
    made = server.client.get("/health/live").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{16}", made)
    # An id that could forge log lines or headers is replaced, not echoed.
    forged = server.client.get("/health/live", headers={"X-Request-ID": 'a b"c'})
    assert re.fullmatch(r"[0-9a-f]{16}", forged.headers["x-request-id"])

    [line] = access_lines(server, "trace-70.a_b")
    assert line["route"] == "/api/v1/allocate" and line["status"] == 200
    assert line["method"] == "POST" and line["message"] == "POST /api/v1/allocate 200"
    assert line["duration_ms"] > 0 and line["level"] == "info"
    assert [line["path"] for line in access_lines(server, made)] == ["/health/live"]
