"""Bad input over real HTTP: every case gets a 4xx with ``{"error": {"code", "message",
"field"?}}``, never a 5xx, and the server stays healthy afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from serverlib import Server, fact

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "LLMKG__SERVER__MAX_BODY_SIZE": str(MAX_BODY),
        "LLMKG__ALLOCATION__MAX_TEXT_LENGTH": "100",
        "LLMKG__ALLOCATION__MAX_BATCH": "5",
    }
    with Server(tmp_path_factory.mktemp("bad"), env) as s:
        yield s


def good_fact(**kw: Any) -> dict[str, Any]:
    return fact(1, **kw)


JSON = {"content-type": "application/json"}

CASES: list[tuple[str, str, Any, int, str | None]] = [
    # (name, path, body (bytes are sent raw), status, field)
    ("not json", "/api/v1/allocate", b"{not json", 400, None),
    ("json but not an object", "/api/v1/allocate", b"[1, 2]", 422, None),
    ("empty body", "/api/v1/allocate", b"", 400, None),
    ("missing fact", "/api/v1/allocate", {}, 422, "fact"),
    ("extra top-level field", "/api/v1/allocate", {"fact": good_fact(), "x": 1}, 422, "x"),
    (
        "missing subject",
        "/api/v1/allocate",
        {"fact": {"predicate": "p", "object": "o", "confidence": 0.5}},
        422,
        "fact.subject",
    ),
    ("extra fact field", "/api/v1/allocate", {"fact": good_fact(colour="red")}, 422, "fact.colour"),
    (
        "subject not a string",
        "/api/v1/allocate",
        {"fact": good_fact(subject=7)},
        422,
        "fact.subject",
    ),
    ("empty subject", "/api/v1/allocate", {"fact": good_fact(subject="   ")}, 422, "fact.subject"),
    (
        "subject too long",
        "/api/v1/allocate",
        {"fact": good_fact(subject="x" * 101)},
        422,
        "fact.subject",
    ),
    (
        "object too long",
        "/api/v1/allocate",
        {"fact": good_fact(object="y" * 101)},
        422,
        "fact.object",
    ),
    (
        "confidence above 1",
        "/api/v1/allocate",
        {"fact": good_fact(confidence=1.5)},
        422,
        "fact.confidence",
    ),
    (
        "confidence below 0",
        "/api/v1/allocate",
        {"fact": good_fact(confidence=-0.1)},
        422,
        "fact.confidence",
    ),
    (
        "confidence a string",
        "/api/v1/allocate",
        {"fact": good_fact(confidence="high")},
        422,
        "fact.confidence",
    ),
    (
        "confidence a bool",
        "/api/v1/allocate",
        {"fact": good_fact(confidence=True)},
        422,
        "fact.confidence",
    ),
    (
        "NaN confidence",
        "/api/v1/allocate",
        b'{"fact": {"subject": "s", "predicate": "p", "object": "o", "confidence": NaN}}',
        400,
        None,
    ),
    (
        "infinite confidence",
        "/api/v1/allocate",
        b'{"fact": {"subject": "s", "predicate": "p", "object": "o", "confidence": 1e999}}',
        422,
        "fact.confidence",
    ),
    (
        "embedding too short",
        "/api/v1/allocate",
        {"fact": good_fact(embedding=[0.1] * 15)},
        422,
        "fact.embedding",
    ),
    (
        "embedding too long",
        "/api/v1/allocate",
        {"fact": good_fact(embedding=[0.1] * 17)},
        422,
        "fact.embedding",
    ),
    (
        "embedding of strings",
        "/api/v1/allocate",
        {"fact": good_fact(embedding=["a"] * 16)},
        422,
        "fact.embedding[0]",
    ),
    (
        "embedding all zeros",
        "/api/v1/allocate",
        {"fact": good_fact(embedding=[0.0] * 16)},
        422,
        "fact.embedding",
    ),
    (
        "embedding with infinity",
        "/api/v1/allocate",
        b'{"fact": {"subject": "s", "predicate": "p", "object": "o", "confidence": 0.5, '
        + b'"embedding": [1e999'
        + b", 0" * 15
        + b"]}}",
        422,
        "fact.embedding[0]",
    ),
    ("batch not a list", "/api/v1/allocate/batch", {"facts": {"a": 1}}, 422, "facts"),
    ("batch empty", "/api/v1/allocate/batch", {"facts": []}, 422, "facts"),
    (
        "batch over max_batch",
        "/api/v1/allocate/batch",
        {"facts": [fact(i) for i in range(6)]},
        422,
        "facts",
    ),
    (
        "batch with one bad fact",
        "/api/v1/allocate/batch",
        {"facts": [fact(1), fact(2, confidence=3)]},
        422,
        "facts[1].confidence",
    ),
    ("search without query", "/api/v1/search", {}, 422, "query"),
    ("search with neither", "/api/v1/search", {"query": {"k": 3}}, 422, "query"),
    (
        "search with both",
        "/api/v1/search",
        {"query": {"text": "a", "embedding": [0.1] * 16}},
        422,
        "query",
    ),
    ("k zero", "/api/v1/search", {"query": {"text": "a", "k": 0}}, 422, "query.k"),
    ("k over 1000", "/api/v1/search", {"query": {"text": "a", "k": 1001}}, 422, "query.k"),
    ("k a float", "/api/v1/search", {"query": {"text": "a", "k": 2.5}}, 422, "query.k"),
    ("ef zero", "/api/v1/search", {"query": {"text": "a", "ef": 0}}, 422, "query.ef"),
    ("text too long", "/api/v1/search", {"query": {"text": "z" * 101}}, 422, "query.text"),
    (
        "wrong embedding length",
        "/api/v1/search",
        {"query": {"embedding": [0.1] * 3}},
        422,
        "query.embedding",
    ),
    (
        "unknown filter field",
        "/api/v1/search",
        {"query": {"text": "a", "filter": {"colour": "red"}}},
        422,
        "query.filter.colour",
    ),
    (
        "min_confidence out of range",
        "/api/v1/search",
        {"query": {"text": "a", "filter": {"min_confidence": 2}}},
        422,
        "query.filter.min_confidence",
    ),
]


@pytest.mark.parametrize(
    ("name", "path", "body", "status", "field"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_bodies_get_a_4xx_naming_the_field(
    server: Server, name: str, path: str, body: Any, status: int, field: str | None
) -> None:
    if isinstance(body, bytes):
        response = server.client.post(path, content=body, headers=JSON)
    else:
        response = server.post(path, body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert error.get("field") == field, error


def test_wrong_content_type_is_415(server: Server) -> None:
    for headers in ({"content-type": "text/plain"}, {}):
        response = server.client.post("/api/v1/allocate", content=b'{"fact": {}}', headers=headers)
        assert response.status_code == 415
        assert response.json()["error"]["code"] == "unsupported_media_type"


def test_bodies_over_max_body_size_are_413(server: Server) -> None:
    huge = {"facts": [good_fact(subject="s" * 90) for _ in range(2000)]}
    response = server.post("/api/v1/allocate/batch", huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    # Without a Content-Length (chunked), the cap holds while reading.
    def chunks() -> Iterator[bytes]:
        yield b'{"facts": ['
        for _ in range(MAX_BODY // 10):
            yield b'"xxxxxxxx",'
        yield b"1]}"

    response = server.client.post("/api/v1/allocate/batch", content=chunks(), headers=JSON)
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("method", "path", "status", "field"),
    [
        ("GET", "/api/v1/nodes/abc", 422, "node_id"),
        ("GET", "/api/v1/nodes/0", 422, "node_id"),
        ("GET", f"/api/v1/nodes/{2**53}", 422, "node_id"),
        ("GET", "/api/v1/nodes/999999", 404, "node_id"),
        ("DELETE", "/api/v1/nodes/-4", 422, "node_id"),
        # Only ASCII digits: Python's int() also reads other Unicode digits, and
        # str.isdigit() accepts superscripts that int() then refuses.
        ("GET", "/api/v1/nodes/\u00b2", 422, "node_id"),
        ("DELETE", "/api/v1/nodes/\u00b2", 422, "node_id"),
        ("GET", "/api/v1/nodes/\u0661\u0662", 422, "node_id"),
        ("DELETE", "/api/v1/nodes/\u0661\u0662", 422, "node_id"),
        ("GET", "/api/v1/nodes/\uff11\uff12", 422, "node_id"),
        ("GET", "/api/v1/nodes/+5", 422, "node_id"),
        ("GET", "/api/v1/nodes/5.0", 422, "node_id"),
        ("GET", "/api/v1/nodes/1e3", 422, "node_id"),
        ("GET", "/api/v1/nodes/0x10", 422, "node_id"),
        ("GET", "/api/v1/nodes/1_000", 422, "node_id"),
        ("GET", "/api/v1/nodes/%205", 422, "node_id"),
        ("GET", "/api/v1/nodes/00", 422, "node_id"),
        # Beyond the id range (1 to 2^53 - 1): 422 however large, never an overflow.
        ("GET", f"/api/v1/nodes/{2**63 - 1}", 422, "node_id"),
        ("GET", f"/api/v1/nodes/{2**63}", 422, "node_id"),
        ("DELETE", f"/api/v1/nodes/{2**64}", 422, "node_id"),
        pytest.param("GET", "/api/v1/nodes/" + "9" * 5000, 422, "node_id", id="GET-5000-digits"),
        pytest.param(
            "DELETE", "/api/v1/nodes/" + "9" * 5000, 422, "node_id", id="DELETE-5000-digits"
        ),
        # Well-formed ids that name no node: 404.
        ("GET", f"/api/v1/nodes/{2**53 - 1}", 404, "node_id"),
        ("DELETE", f"/api/v1/nodes/{2**53 - 1}", 404, "node_id"),
        ("GET", "/api/v1/nodes/000999999", 404, "node_id"),
        ("GET", "/api/v1/nowhere", 404, None),
        ("PUT", "/api/v1/allocate", 405, None),
        ("GET", "/api/v1/allocate", 405, None),
    ],
)
def test_bad_routes_and_ids(
    server: Server, method: str, path: str, status: int, field: str | None
) -> None:
    response = server.client.request(method, path)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] and error["message"] and error.get("field") == field


def test_the_server_stays_healthy_after_all_of_it(server: Server) -> None:
    assert server.client.get("/health/ready").status_code == 200
    created = server.post("/api/v1/allocate", {"fact": fact(77)})
    assert created.status_code == 200
    assert "Traceback" not in server.logs()
    assert '"status":500' not in server.logs().replace(" ", "")
