"""The HTTP API reference, rendered from the OpenAPI document.

``python -m llmkg.server.openapi_docs > docs/reference/http.md`` writes the page and
``python -m llmkg.server.openapi_docs --json > docs/reference/openapi.json`` the document
itself; tests/test_openapi_docs.py fails when either committed file differs from this
module's output. Everything on the page (routes, parameters, bodies, answers, statuses,
examples, the schemas' fields) is read from ``openapi_document``: the page cannot say
something the server's own document does not.

The document rendered is the one of a server on ``config/production.toml``'s defaults
(JWT authentication and rate limits on), so that every status and route is on the page.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from llmkg.config import Settings
from llmkg.server.openapi import openapi_document

# Where the examples' curl commands send their requests (the built-in defaults' port).
BASE_URL = "localhost:8080"
_EXACT = {2**53: "2^53", 2**53 - 1: "2^53 - 1"}


def reference_document() -> dict[str, Any]:
    return openapi_document(Settings())


def schema_anchor(name: str) -> str:
    return "schema-" + name.lower()


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _number(value: float) -> str:
    return _EXACT.get(int(value), str(value)) if value == int(value) else str(value)


def _bounds(schema: dict[str, Any]) -> str:
    parts: list[str] = []
    low, high = schema.get("minimum"), schema.get("maximum")
    below = schema.get("exclusiveMaximum")
    if low is not None and high is not None:
        parts.append(f"{_number(low)} to {_number(high)}")
    elif low is not None and below is not None:
        parts.append(f"{_number(low)} to below {_number(below)}")
    elif low is not None:
        parts.append(f"≥ {_number(low)}")
    elif high is not None:
        parts.append(f"≤ {_number(high)}")
    if schema.get("minLength"):
        parts.append("not empty")
    least, most = schema.get("minItems"), schema.get("maxItems")
    if least is not None and most is not None:
        parts.append(f"{least} to {most} items")
    elif least is not None:
        parts.append(f"at least {least} item{'s' if least != 1 else ''}")
    return ", ".join(parts)


def type_text(schema: dict[str, Any]) -> str:
    """A JSON schema as a reader of a table sees it, linking to the named schemas."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[`{name}`](#{schema_anchor(name)})"
    if "anyOf" in schema:
        return " or ".join(type_text(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(value)}`" for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        text = f"list of {type_text(schema['items'])}"
    elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        text = f"object of {type_text(schema['additionalProperties'])}"
    elif isinstance(kind, str):
        text = kind
    else:
        text = "any JSON value"
    bounds = _bounds(schema)
    return f"{text} ({bounds})" if bounds else text


def _default(schema: dict[str, Any]) -> str:
    return f"`{json.dumps(schema['default'])}`" if "default" in schema else ""


def _first_media(content: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    media_type, media = next(iter(content.items()))
    return media_type, media


def _parameters(op: dict[str, Any]) -> list[str]:
    params = op.get("parameters", [])
    if not params:
        return []
    out = ["\n**Parameters**\n\n", "| name | in | type | default | what it is |\n"]
    out.append("| --- | --- | --- | --- | --- |\n")
    for p in params:
        required = " (required)" if p.get("required") else ""
        out.append(
            f"| `{p['name']}` | {p['in']}{required} | {_cell(type_text(p['schema']))} "
            f"| {_default(p['schema'])} | {_cell(p.get('description', ''))} |\n"
        )
    return out


def _request(op: dict[str, Any]) -> list[str]:
    if "requestBody" not in op:
        return []
    media_type, media = _first_media(op["requestBody"]["content"])
    return [f"\n**Request body** (`{media_type}`): {type_text(media['schema'])}\n"]


def status_anchor(status: str) -> str:
    return f"status-{status}"


def _answer_body(response: dict[str, Any]) -> str:
    media_type, media = _first_media(response["content"])
    body = type_text(media["schema"])
    if media_type != "application/json":
        body += f" (`{media_type}`, one a line)"
    return body


def _responses(op: dict[str, Any]) -> list[str]:
    """The 200 answer's body, and the error statuses linked to what each means."""
    out = [f"\n**Answer** (200): {_answer_body(op['responses']['200'])}\n"]
    errors = [status for status in op["responses"] if status != "200"]
    if errors:
        links = ", ".join(f"[{status}](#{status_anchor(status)})" for status in errors)
        out.append(f"\n**Errors**: {links}\n")
    return out


def error_statuses(doc: dict[str, Any]) -> dict[str, str]:
    """Every error status of the document and what it means (the same on every route)."""
    found: dict[str, str] = {}
    for methods in doc["paths"].values():
        for op in methods.values():
            for status, response in op["responses"].items():
                if status == "200":
                    continue
                meaning = found.setdefault(status, response["description"])
                assert meaning == response["description"], f"{status} means two things"
    return dict(sorted(found.items()))


def _errors(doc: dict[str, Any]) -> list[str]:
    out = [
        "\n## Errors\n\nEvery error answers an "
        f"[`ErrorResponse`](#{schema_anchor('ErrorResponse')}): "
        '`{"error": {"code", "message", "field"?}}`.\n',
        "\n| status | when (`code`) |\n| --- | --- |\n",
    ]
    for status, meaning in error_statuses(doc).items():
        out.append(f'| <span id="{status_anchor(status)}"></span>{status} | {_cell(meaning)} |\n')
    return out


def curl(method: str, url: str, body: Any) -> str:
    """The example's request as a curl command."""
    target = f"{BASE_URL}{url}"
    if "?" in target:
        target = f"'{target}'"
    words = ["curl -s"]
    if method != "get" and (method != "post" or body is None):
        words.append(f"-X {method.upper()}")
    words.append(target)
    if body is None:
        return " ".join(words)
    data = json.dumps(body, ensure_ascii=False)
    assert "'" not in data, "a body with a single quote needs shell escaping"
    head = " ".join([*words, "-H 'content-type: application/json'"])
    return f"{head} \\\n  -d '{data}'"


def _answer(value: Any) -> str:
    if isinstance(value, str):  # NDJSON: the lines as they are sent
        return value.rstrip("\n")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def examples(op: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The route's examples, (status, example), in the answers' order."""
    found: list[tuple[str, dict[str, Any]]] = []
    for status, response in op["responses"].items():
        for media in response.get("content", {}).values():
            found += [(status, example) for example in media.get("examples", {}).values()]
    return found


def _examples(method: str, op: dict[str, Any]) -> list[str]:
    found = examples(op)
    if not found:
        return []
    out = ["\n**Examples**\n"]
    for status, example in found:
        answered = "" if status == "200" else f" ({status})"
        out.append(f"\n*{example['summary']}*{answered}.")
        if example.get("description"):
            out.append(f" {example['description']}")
        out.append("\n")
        request = example["x-request"]
        out.append(f"\n```\n{curl(method, request['url'], request['body'])}\n```\n")
        out.append(f"\n```json\n{_answer(example['value'])}\n```\n")
    return out


def _operation(method: str, path: str, op: dict[str, Any]) -> list[str]:
    out = [f"\n## `{method.upper()} {path}` {{#{op['operationId']}}}\n\n{op['summary']}.\n"]
    security = op.get("security")
    if security:
        (scope,) = security[0]["bearer"]
        out.append(f"\nScope: `{scope}` (with authentication on).\n")
    else:
        out.append("\nOpen: no token needed.\n")
    return [*out, *_parameters(op), *_request(op), *_responses(op), *_examples(method, op)]


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    out = [f"\n### `{name}` {{#{schema_anchor(name)}}}\n"]
    if schema.get("description"):
        out.append(f"\n{schema['description']}\n")
    properties: dict[str, Any] = schema.get("properties", {})
    if not properties:
        return out
    if schema.get("additionalProperties") is False:
        out.append("\nAn unknown field is refused (422 naming it).\n")
    required = set(schema.get("required", []))
    out += [
        "\n| field | type | required | default | what it is |\n",
        "| --- | --- | --- | --- | --- |\n",
    ]
    for field, prop in properties.items():
        out.append(
            f"| `{field}` | {_cell(type_text(prop))} | {'yes' if field in required else ''} "
            f"| {_default(prop)} | {_cell(prop.get('description', ''))} |\n"
        )
    return out


_HEADER = """\
# HTTP API reference

<!-- Generated by `python -m llmkg.server.openapi_docs` from the OpenAPI document
     (python/llmkg/server/openapi.py, models.py, openapi_examples.py);
     tests/test_openapi_docs.py fails when this page and the document disagree.
     Do not edit. -->

Every route of `llmkg-server`, its parameters, body, answers and examples, and the
schemas of the bodies: the OpenAPI {version} document the server serves at
`GET /openapi.json`, rendered ([openapi.json](openapi.json) is the same document). The
[HTTP API](../http-api.md) page says how the routes behave.

This is the document of a server with authentication and rate limits on (the defaults of
`config/production.toml`). Without authentication (the built-in defaults, `make run`),
no route needs a token, `POST /api/v1/auth/refresh` does not exist, and 401, 403 and the
429s of the rate limits are never answered. The [errors](#errors) are the same on every
route.

The examples were taken from a server on the built-in defaults, each route's in the order
shown; with authentication on, add `-H "authorization: Bearer $TOKEN"` to each command.
"""


def render(doc: dict[str, Any] | None = None) -> str:
    doc = doc or reference_document()
    out = [
        _HEADER.format(version=doc["openapi"]),
        "\n## Routes\n\n| route | what it does | scope |\n| --- | --- | --- |\n",
    ]
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            scope = op["security"][0]["bearer"][0] if op.get("security") else "-"
            route = f"[`{method.upper()} {path}`](#{op['operationId']})"
            out.append(f"| {route} | {_cell(op['summary'])} | {scope} |\n")
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            out += _operation(method, path, op)
    out += _errors(doc)
    out.append("\n## Schemas\n")
    for name, schema in doc["components"]["schemas"].items():
        out += _schema(name, schema)
    return "".join(out)


def render_json(doc: dict[str, Any] | None = None) -> str:
    return json.dumps(doc or reference_document(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--json"]):
        sys.stderr.write("usage: python -m llmkg.server.openapi_docs [--json]\n")
        return 2
    sys.stdout.write(render_json() if args else render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
