"""The OpenAPI 3.1 document, generated from the same types the server decodes and encodes.

The schemas' descriptions come from the types too: a struct's docstring, and a field's
comments in its source (the lines directly above it and the one at its end, as the
configuration reference reads ``schema.py``). Each route's examples are
``openapi_examples.EXAMPLES``. The HTTP reference page of the docs is this document
rendered (``python -m llmkg.server.openapi_docs``).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, NamedTuple

import msgspec

from llmkg import __version__
from llmkg.config import Settings
from llmkg.config.docs import field_comments
from llmkg.engine.exchange import MEDIA_TYPE as NDJSON
from llmkg.engine.exchange import ExportedFact
from llmkg.server import models as m
from llmkg.server.errors import ErrorResponse
from llmkg.server.openapi_examples import EXAMPLES, Example

REF = "#/components/schemas/{name}"


class Operation(NamedTuple):
    method: str
    path: str
    summary: str
    request: type | None  # the JSON body's type (None: no body)
    response: type | None  # the 200 answer's type (dict: a JSON object of no fixed shape)
    errors: tuple[int, ...]  # the error statuses, beside those of authentication
    scope: str | None  # the token scope it needs with authentication on (None: open)


OPERATIONS: list[Operation] = [
    Operation(
        "post",
        "/api/v1/allocate",
        "Allocate one fact",
        m.AllocateRequest,
        m.Allocation,
        (400, 413, 415, 422, 503, 504, 507),
        "write",
    ),
    Operation(
        "post",
        "/api/v1/allocate/batch",
        "Allocate facts; results in input order",
        m.AllocateBatchRequest,
        m.AllocateBatchResponse,
        (400, 413, 415, 422, 503, 504, 507),
        "write",
    ),
    Operation(
        "post",
        "/api/v1/search",
        "Nearest nodes, best first; with expand, the facts connected to them",
        m.SearchRequest,
        m.SearchResponse,
        (400, 413, 415, 422, 503, 504),
        "read",
    ),
    Operation(
        "get", "/api/v1/nodes/{node_id}", "One node", None, m.NodeResponse, (404, 422, 503), "read"
    ),
    Operation(
        "delete",
        "/api/v1/nodes/{node_id}",
        "Delete a node",
        None,
        m.DeleteResponse,
        (404, 422, 503, 507),
        "write",
    ),
    Operation(
        "get",
        "/api/v1/facts",
        "Facts matching a triple pattern, by node id",
        None,
        m.FactsPage,
        (422, 503, 504),
        "read",
    ),
    Operation(
        "get",
        "/api/v1/entities",
        "Entity names (subjects and objects), in code point order",
        None,
        m.EntitiesPage,
        (422, 503, 504),
        "read",
    ),
    Operation(
        "get",
        "/api/v1/entities/{name}",
        "The facts that mention an entity",
        None,
        m.EntityResponse,
        (404, 422, 503, 504),
        "read",
    ),
    Operation(
        "get",
        "/api/v1/nodes/{node_id}/children",
        "The nodes whose parent is a node, by id",
        None,
        m.ChildrenPage,
        (404, 422, 503, 504),
        "read",
    ),
    Operation(
        "get",
        "/api/v1/nodes/{node_id}/ancestors",
        "A node's parent, its parent and so on to a root, nearest first",
        None,
        m.AncestorsResponse,
        (404, 422, 503, 504),
        "read",
    ),
    Operation(
        "post",
        "/api/v1/traverse",
        "The facts within a few hops of entities or nodes, breadth first",
        m.TraverseRequest,
        m.TraverseResponse,
        (400, 413, 415, 422, 503, 504),
        "read",
    ),
    Operation(
        "get",
        "/api/v1/export",
        "Every live fact as NDJSON (one ExportedFact a line), by node id, streamed",
        None,
        ExportedFact,
        (422, 503, 504),
        "read",
    ),
    Operation("get", "/api/v1/stats", "Engine statistics", None, dict, (503,), "admin"),
    Operation(
        "post",
        "/api/v1/admin/checkpoint",
        "Write an index snapshot now",
        None,
        m.CheckpointResponse,
        (503, 504, 507),
        "admin",
    ),
    Operation(
        "post",
        "/api/v1/admin/backup",
        "Write a backup into storage.backup_directory",
        None,
        m.BackupResponse,
        (409, 503, 504, 507),
        "admin",
    ),
    Operation(
        "post",
        "/api/v1/auth/refresh",
        "A new access token for a refresh token",
        m.RefreshRequest,
        m.TokenResponse,
        (400, 401, 413, 415, 422),
        None,
    ),
    Operation("get", "/health/live", "Liveness", None, m.HealthResponse, (), None),
    Operation(
        "get",
        "/health/ready",
        "Readiness (503 with per-check detail)",
        None,
        m.HealthResponse,
        (503,),
        None,
    ),
]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


_TEXT = {"type": "string", "minLength": 1}
_LIMIT = _query(
    "limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, "Page size"
)
_CURSOR = _query("cursor", _TEXT, "`next_cursor` of the previous page")
QUERY_PARAMETERS: dict[str, list[dict[str, Any]]] = {
    "/api/v1/facts": [
        *(
            _query(f, _TEXT, f"Exact {f} (canonical form)")
            for f in ("subject", "predicate", "object")
        ),
        _query(
            "min_confidence", {"type": "number", "minimum": 0, "maximum": 1}, "Lowest confidence"
        ),
        _LIMIT,
        _CURSOR,
    ],
    "/api/v1/entities": [
        _query("prefix", {"type": "string"}, "Names that start with it"),
        _LIMIT,
        _CURSOR,
    ],
    "/api/v1/entities/{name}": [
        {
            "name": "name",
            "in": "path",
            "required": True,
            "schema": _TEXT,
            "description": "An entity: a subject or object, as stored (`/` sent as `%2F`)",
        },
        _query("limit", _LIMIT["schema"], "Page size of each list"),
        _query("subject_cursor", _TEXT, "`as_subject_next_cursor` of the previous page"),
        _query("object_cursor", _TEXT, "`as_object_next_cursor` of the previous page"),
    ],
    "/api/v1/export": [
        _query(
            "embedding",
            {"type": "boolean", "default": False},
            "Each fact's stored vector too (for a store whose vectors came from clients)",
        )
    ],
    "/api/v1/nodes/{node_id}/children": [_LIMIT, _CURSOR],
    "/api/v1/nodes/{node_id}/ancestors": [
        _query(
            "max_depth",
            {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000},
            "How many ancestors at most",
        )
    ],
}

DESCRIPTIONS = {
    400: "The body is not JSON (`invalid_json`)",
    401: "Missing or invalid bearer token (`unauthorized`; `token_expired`: a token of ours "
    "past its `exp`: refresh it)",
    403: "The token lacks the route's scope (`forbidden`)",
    404: "No such node, entity or route (`not_found`)",
    409: "A backup of a store that its database backs up (`backup_unsupported`: "
    '`storage.backend = "postgresql"`)',
    413: "The body is larger than `server.max_body_size` (`payload_too_large`)",
    415: "The body is not `application/json` (`unsupported_media_type`)",
    422: "A field or parameter is missing, unknown, of the wrong type or out of range "
    "(`invalid_field`, naming it in `field`)",
    429: "Over the rate limit (`rate_limited`; see `Retry-After`)",
    503: "Not ready: loading or shutting down (`not_ready`); the store cannot commit, its "
    "disk or its database unreachable (`store_unavailable`); the index linker failing "
    "(`index_unavailable`); partitioned: not caught up with the database "
    "(`not_caught_up`) or a partition unreachable (`partition_unavailable`). Each with "
    "`Retry-After`. Over `server.max_connections`, uvicorn itself answers 503 in plain text",
    504: "The request ran past `server.request_timeout` (`timeout`)",
    507: "The data directory's disk is full: nothing was written (`storage_full`)",
}


def _structs(kinds: list[type]) -> dict[str, type]:
    """Every struct type the schemas of ``kinds`` name, by schema name."""
    found: dict[str, type] = {}

    def walk(info: msgspec.inspect.Type) -> None:
        if isinstance(info, msgspec.inspect.StructType):
            if info.cls.__name__ in found:
                return
            found[info.cls.__name__] = info.cls
            for field in info.fields:
                walk(field.type)
            return
        for attr in ("item_type", "key_type", "value_type"):
            if isinstance(inner := getattr(info, attr, None), msgspec.inspect.Type):
                walk(inner)
        for inner in getattr(info, "types", ()):
            walk(inner)

    for info in msgspec.inspect.multi_type_info(kinds):
        walk(info)
    return found


def _describe_fields(components: dict[str, Any], structs: dict[str, type]) -> None:
    """Each property's ``description``: the comments of its field in the source."""
    for name, cls in structs.items():
        try:
            comments = field_comments(cls)
        except OSError:  # no source to read (a build without .py files): no descriptions
            continue
        properties = components[name].get("properties", {})
        for field, text in comments.items():
            if text and field in properties:
                properties[field]["description"] = text


@cache
def _components() -> tuple[dict[str, Any], dict[type, Any]]:
    kinds = [k for op in OPERATIONS for k in (op.request, op.response) if k not in (None, dict)]
    schemas, components = msgspec.json.schema_components([*kinds, ErrorResponse], ref_template=REF)
    _describe_fields(components, _structs([*kinds, ErrorResponse]))
    return components, dict(zip([*kinds, ErrorResponse], schemas, strict=True))


# Routes whose 200 answer is not one JSON document; the schema is that of a line.
MEDIA_TYPES = {"/api/v1/export": NDJSON}


def _content(schema: Any, media_type: str = "application/json") -> dict[str, Any]:
    return {media_type: {"schema": schema}}


def _example(example: Example, value: Any, request: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": example.summary}
    if example.description:
        out["description"] = example.description
    out["value"] = value
    if not request:
        # How the answer was asked for: the reference page shows it as a curl command.
        out["x-request"] = {"url": example.url, "body": example.body}
    return out


def _add_examples(op: dict[str, Any], examples: list[Example]) -> None:
    """The examples of a route, on its request body and on the answers they got."""
    for example in examples:
        if example.body is not None:
            media = next(iter(op["requestBody"]["content"].values()))
            media.setdefault("examples", {})[example.name] = _example(example, example.body, True)
        answer = op["responses"][str(example.status)]["content"]
        media = next(iter(answer.values()))
        media.setdefault("examples", {})[example.name] = _example(example, example.answer, False)


_NODE_ID = {
    "name": "node_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**53 - 1},
    "description": "A node id, in ASCII digits (any other id is 422)",
}


def openapi_document(settings: Settings) -> dict[str, Any]:
    components, refs = _components()
    auth = settings.security.authentication.type == "jwt"
    paths: dict[str, Any] = {}
    for method, path, summary, request, response, errors, scope in OPERATIONS:
        if path == "/api/v1/auth/refresh" and not auth:
            continue
        secured = scope is not None
        statuses = set(errors)
        if secured and auth:
            statuses |= {401, 403}
        limited = auth and settings.security.authentication.auth_failures_per_minute > 0
        if path == "/api/v1/auth/refresh":
            limited = limited or settings.security.authentication.refresh_per_minute > 0
        elif secured:
            limited = limited or settings.security.rate_limit.enabled
        else:
            limited = False
        if limited:
            statuses.add(429)
        op: dict[str, Any] = {
            "summary": summary,
            "operationId": method + re.sub(r"[^a-z0-9]+", "_", path.lower()).rstrip("_"),
            "responses": {
                "200": {
                    "description": "OK",
                    "content": _content(
                        {"type": "object"}
                        if response is None or response is dict
                        else refs[response],
                        MEDIA_TYPES.get(path, "application/json"),
                    ),
                },
                **{
                    str(code): {
                        "description": DESCRIPTIONS[code],
                        "content": _content(refs[ErrorResponse]),
                    }
                    for code in sorted(statuses)
                },
            },
        }
        if request is not None:
            op["requestBody"] = {"required": True, "content": _content(refs[request])}
        parameters: list[dict[str, Any]] = []
        if "{node_id}" in path:
            parameters.append(_NODE_ID)
        parameters += QUERY_PARAMETERS.get(path, [])
        if parameters:
            op["parameters"] = parameters
        if secured and auth:
            # OpenAPI 3.1: a bearer scheme's requirement may list the roles it needs.
            op["security"] = [{"bearer": [scope]}]
        _add_examples(op, EXAMPLES.get((method, path), []))
        paths.setdefault(path, {})[method] = op
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "llmkg", "version": __version__},
        "paths": paths,
        "components": {"schemas": components},
    }
    if auth:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        }
    return doc
