"""The OpenAPI 3.1 document, generated from the same types the server decodes and encodes."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import msgspec

from llmkg import __version__
from llmkg.config import Settings
from llmkg.engine.exchange import MEDIA_TYPE as NDJSON
from llmkg.engine.exchange import ExportedFact
from llmkg.server import models as m
from llmkg.server.errors import ErrorResponse

REF = "#/components/schemas/{name}"

# method, path, summary, request type, response type, error statuses, needs auth
OPERATIONS: list[tuple[str, str, str, type | None, type | None, tuple[int, ...], bool]] = [
    (
        "post",
        "/api/v1/allocate",
        "Allocate one fact",
        m.AllocateRequest,
        m.Allocation,
        (400, 413, 415, 422, 503, 504, 507),
        True,
    ),
    (
        "post",
        "/api/v1/allocate/batch",
        "Allocate facts; results in input order",
        m.AllocateBatchRequest,
        m.AllocateBatchResponse,
        (400, 413, 415, 422, 503, 504, 507),
        True,
    ),
    (
        "post",
        "/api/v1/search",
        "Nearest nodes, best first; with expand, the facts connected to them",
        m.SearchRequest,
        m.SearchResponse,
        (400, 413, 415, 422, 503, 504),
        True,
    ),
    ("get", "/api/v1/nodes/{node_id}", "One node", None, m.NodeResponse, (404, 422, 503), True),
    (
        "delete",
        "/api/v1/nodes/{node_id}",
        "Delete a node",
        None,
        m.DeleteResponse,
        (404, 422, 503, 507),
        True,
    ),
    (
        "get",
        "/api/v1/facts",
        "Facts matching a triple pattern, by node id",
        None,
        m.FactsPage,
        (422, 503, 504),
        True,
    ),
    (
        "get",
        "/api/v1/entities",
        "Entity names (subjects and objects), in code point order",
        None,
        m.EntitiesPage,
        (422, 503, 504),
        True,
    ),
    (
        "get",
        "/api/v1/entities/{name}",
        "The facts that mention an entity",
        None,
        m.EntityResponse,
        (404, 422, 503, 504),
        True,
    ),
    (
        "get",
        "/api/v1/nodes/{node_id}/children",
        "The nodes whose parent is a node, by id",
        None,
        m.ChildrenPage,
        (404, 422, 503, 504),
        True,
    ),
    (
        "get",
        "/api/v1/nodes/{node_id}/ancestors",
        "A node's parent, its parent and so on to a root, nearest first",
        None,
        m.AncestorsResponse,
        (404, 422, 503, 504),
        True,
    ),
    (
        "post",
        "/api/v1/traverse",
        "The facts within a few hops of entities or nodes, breadth first",
        m.TraverseRequest,
        m.TraverseResponse,
        (400, 413, 415, 422, 503, 504),
        True,
    ),
    (
        "get",
        "/api/v1/export",
        "Every live fact as NDJSON (one ExportedFact a line), by node id, streamed",
        None,
        ExportedFact,
        (422, 503, 504),
        True,
    ),
    ("get", "/api/v1/stats", "Engine statistics", None, dict, (503,), True),
    (
        "post",
        "/api/v1/admin/checkpoint",
        "Write an index snapshot now",
        None,
        m.CheckpointResponse,
        (503, 504, 507),
        True,
    ),
    (
        "post",
        "/api/v1/admin/backup",
        "Write a backup into storage.backup_directory",
        None,
        m.BackupResponse,
        (409, 503, 504, 507),
        True,
    ),
    (
        "post",
        "/api/v1/auth/refresh",
        "A new access token for a refresh token",
        m.RefreshRequest,
        m.TokenResponse,
        (400, 401, 413, 415, 422),
        False,
    ),
    ("get", "/health/live", "Liveness", None, m.HealthResponse, (), False),
    (
        "get",
        "/health/ready",
        "Readiness (503 with per-check detail)",
        None,
        m.HealthResponse,
        (503,),
        False,
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
_CURSOR = _query("cursor", _TEXT, "next_cursor of the previous page")
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
        {"name": "name", "in": "path", "required": True, "schema": _TEXT},
        _query("limit", _LIMIT["schema"], "Page size of each list"),
        _query("subject_cursor", _TEXT, "as_subject_next_cursor of the previous page"),
        _query("object_cursor", _TEXT, "as_object_next_cursor of the previous page"),
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
    400: "The body is not JSON",
    401: "Missing or invalid bearer token (code token_expired: refresh it)",
    403: "The token lacks the scope",
    404: "No such node, entity or route",
    413: "The body is larger than server.max_body_size",
    415: "The body is not application/json",
    409: 'The store is backed up by its database (storage.backend = "postgresql")',
    422: "A field is missing, unknown, of the wrong type or out of range",
    429: "Over the rate limit (see Retry-After)",
    503: "Not ready (loading), the store (code store_unavailable: its disk, or its "
    "database unreachable) or the index (code index_unavailable) unavailable (see "
    "Retry-After), or over server.max_connections",
    504: "The request ran past server.request_timeout",
    507: "The data directory's disk is full: nothing was written (code storage_full)",
}


@cache
def _components() -> tuple[dict[str, Any], dict[type, Any]]:
    kinds = [k for op in OPERATIONS for k in (op[3], op[4]) if k not in (None, dict)]
    schemas, components = msgspec.json.schema_components([*kinds, ErrorResponse], ref_template=REF)
    return components, dict(zip([*kinds, ErrorResponse], schemas, strict=True))


# Routes whose 200 answer is not one JSON document; the schema is that of a line.
MEDIA_TYPES = {"/api/v1/export": NDJSON}


def _content(schema: Any, media_type: str = "application/json") -> dict[str, Any]:
    return {media_type: {"schema": schema}}


def openapi_document(settings: Settings) -> dict[str, Any]:
    components, refs = _components()
    auth = settings.security.authentication.type == "jwt"
    paths: dict[str, Any] = {}
    for method, path, summary, request, response, errors, secured in OPERATIONS:
        if path == "/api/v1/auth/refresh" and not auth:
            continue
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
            parameters.append(
                {
                    "name": "node_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 2**53 - 1},
                }
            )
        parameters += QUERY_PARAMETERS.get(path, [])
        if parameters:
            op["parameters"] = parameters
        if secured and auth:
            op["security"] = [{"bearer": []}]
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
