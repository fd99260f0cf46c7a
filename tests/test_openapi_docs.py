"""The HTTP API reference in docs/ is the OpenAPI document rendered, and the document's
examples and scopes are those of the server."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgspec
import pytest
from starlette.responses import Response

from llmkg.config import Settings
from llmkg.engine.exchange import ExportedFact
from llmkg.server import app, openapi_docs
from llmkg.server.errors import ErrorResponse
from llmkg.server.openapi import OPERATIONS, Operation
from llmkg.server.openapi_examples import EXAMPLES, Example
from llmkg.validation import error_location

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "http.md"
DOCUMENT = ROOT / "docs" / "reference" / "openapi.json"
REGENERATE = (
    "python -m llmkg.server.openapi_docs > docs/reference/http.md && "
    "python -m llmkg.server.openapi_docs --json > docs/reference/openapi.json"
)


def test_committed_page_is_the_generators_output() -> None:
    assert PAGE.read_text() == openapi_docs.render(), f"the page is stale: run `{REGENERATE}`"


def test_committed_document_is_the_servers() -> None:
    assert DOCUMENT.read_text() == openapi_docs.render_json(), (
        f"docs/reference/openapi.json is stale: run `{REGENERATE}`"
    )


def _served_routes() -> dict[tuple[str, str], str | None]:
    """(method, path) -> scope of every route the app serves, from its own table."""

    async def handler(request: Any) -> Response:
        raise AssertionError("not called")

    state: Any = SimpleNamespace(settings=Settings())
    health: Any = SimpleNamespace(live=handler, ready=handler)
    security: Any = SimpleNamespace(refresh_endpoint=lambda: handler)
    return {
        (e.method.lower(), e.path.replace(":path}", "}")): e.scope
        for e in app.endpoints(state, health, security)
        if e.path != "/openapi.json"
    }


def test_every_route_is_documented_with_its_scope() -> None:
    doc = openapi_docs.reference_document()
    documented = {
        (method, path): (op["security"][0]["bearer"][0] if "security" in op else None)
        for path, methods in doc["paths"].items()
        for method, op in methods.items()
    }
    assert documented == _served_routes()


def _operation(method: str, path: str) -> Operation:
    return next(op for op in OPERATIONS if (op.method, op.path) == (method, path))


def _cases() -> list[tuple[str, str, Example]]:
    return [(method, path, ex) for (method, path), exs in EXAMPLES.items() for ex in exs]


def test_every_route_has_an_example() -> None:
    routes = {(op.method, op.path) for op in OPERATIONS}
    assert routes == set(EXAMPLES)
    for (method, path), examples in EXAMPLES.items():
        assert any(e.status == 200 for e in examples), f"{method} {path}: no 200 example"
        assert len({e.name for e in examples}) == len(examples), f"{method} {path}: names"


def _round_trip(value: Any, kind: type) -> Any:
    return msgspec.to_builtins(msgspec.convert(value, kind))


@pytest.mark.parametrize(
    ("method", "path", "example"), _cases(), ids=lambda v: v.name if isinstance(v, Example) else ""
)
def test_example_is_what_the_server_decodes_and_answers(
    method: str, path: str, example: Example
) -> None:
    op = _operation(method, path)
    url = urlsplit(example.url)
    template = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(path))
    assert re.fullmatch(template, url.path), f"{example.url} is not a URL of {path}"
    names = {
        p["name"]
        for p in openapi_docs.reference_document()["paths"][path][method].get("parameters", [])
    }
    for name, _ in parse_qsl(url.query, keep_blank_values=True):
        assert name in names, f"{example.url}: {name} is not a parameter of {path}"
    assert (example.body is not None) == (op.request is not None)
    if example.status == 200:
        if op.request is not None:
            msgspec.json.decode(json.dumps(example.body), type=op.request)
        if op.response is dict:
            assert isinstance(example.answer, dict)
        elif op.response is ExportedFact:
            lines = [json.loads(line) for line in example.answer.splitlines()]
            assert [_round_trip(line, ExportedFact) for line in lines] == lines
        else:
            assert op.response is not None
            assert _round_trip(example.answer, op.response) == example.answer
        return
    assert example.status in op.errors
    assert _round_trip(example.answer, ErrorResponse) == example.answer
    if example.status == 422 and op.request is not None:
        # The refusal shown is the one the body gets.
        with pytest.raises(msgspec.ValidationError) as refused:
            msgspec.json.decode(json.dumps(example.body), type=op.request)
        field, reason = error_location(refused.value)
        assert example.answer["error"] == {
            "code": "invalid_field",
            "message": reason,
            "field": field,
        }


def test_types_render_as_readers_see_them() -> None:
    page = openapi_docs.render()
    # A field's comment in models.py is its description; bounds and links are rendered.
    assert "| `k` | integer (1 to 1000) |  | `10` | How many hits at most |" in page
    assert "| `node_id` | path (required) | integer (1 to 2^53 - 1) |" in page
    assert "list of [`FactIn`](#schema-factin) (at least 1 item)" in page
    assert "Scope: `admin`" in page
