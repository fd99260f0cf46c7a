"""The handlers of the graph's reads: triple patterns, entities, children and ancestors,
and traversals.

The input of the listings is the query string: each parameter at most once, an unknown one refused
(422 naming it), as a body's unknown field is. Cursors are opaque to clients: URL-safe
base64 of a tag and the last key of the page (``n`` and a node id, ``e`` and a name), so
that a cursor of one listing is refused by another instead of being misread."""

from __future__ import annotations

import base64
import binascii
import math
import re

from starlette.requests import Request
from starlette.responses import Response

from llmkg.engine import Node
from llmkg.server import models as m
from llmkg.server.api import MAX_NODE_ID, _fact_out, json_response, node_id_param, read_json
from llmkg.server.errors import ApiError
from llmkg.server.state import ServerState

_BASE64URL = re.compile(r"[A-Za-z0-9_-]{2,8192}", re.ASCII)
_ID = re.compile(r"[1-9][0-9]{0,15}", re.ASCII)
_INT = re.compile(r"[0-9]{1,16}", re.ASCII)
_NUMBER = re.compile(r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]{1,3})?", re.ASCII)
FIELD_SHOWN = 64  # characters of an unknown parameter's name echoed in the error


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(422, message, code="invalid_field", field=field)


def query(request: Request, allowed: frozenset[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key not in allowed:
            raise _invalid(key[:FIELD_SHOWN], "unknown query parameter")
        if key in out:
            raise _invalid(key, "given more than once")
        out[key] = value
    return out


def int_param(params: dict[str, str], field: str, default: int, top: int) -> int:
    raw = params.get(field)
    if raw is None:
        return default
    value = int(raw) if _INT.fullmatch(raw) else 0
    if not 1 <= value <= top:
        raise _invalid(field, f"must be an integer from 1 to {top}")
    return value


def confidence_param(params: dict[str, str], field: str) -> float | None:
    raw = params.get(field)
    if raw is None:
        return None
    value = float(raw) if _NUMBER.fullmatch(raw) else math.nan
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise _invalid(field, "must be a number from 0 to 1")
    return value


def encode_cursor(tag: str, key: int | str | None) -> str | None:
    if key is None:
        return None
    raw = (tag + str(key)).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(params: dict[str, str], field: str, tag: str) -> str | None:
    raw = params.get(field)
    if raw is None:
        return None
    try:
        if not _BASE64URL.fullmatch(raw):
            raise ValueError
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (ValueError, binascii.Error):  # UnicodeDecodeError is a ValueError
        text = ""
    if not text.startswith(tag) or len(text) == len(tag):
        raise _invalid(field, "not a cursor of this listing: pass next_cursor as it came")
    return text[len(tag) :]


def id_cursor(params: dict[str, str], field: str = "cursor") -> int:
    """The node id after which a page starts (0: the first page)."""
    key = _decode(params, field, "n")
    if key is None:
        return 0
    if not _ID.fullmatch(key) or int(key) > MAX_NODE_ID:
        raise _invalid(field, "not a cursor of this listing: pass next_cursor as it came")
    return int(key)


def _nodes(nodes: list[Node]) -> list[m.NodeResponse]:
    return [m.NodeResponse(n.node_id, _fact_out(n), n.parent) for n in nodes]


FACTS = frozenset({"subject", "predicate", "object", "min_confidence", "limit", "cursor"})
ENTITY = frozenset({"limit", "subject_cursor", "object_cursor"})
ENTITIES = frozenset({"prefix", "limit", "cursor"})
CHILDREN = frozenset({"limit", "cursor"})
ANCESTORS = frozenset({"max_depth"})
DEFAULT_LIMIT, MAX_LIMIT, MAX_DEPTH = 100, 1000, 1000


class GraphApi:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def facts(self, request: Request) -> Response:
        params = query(request, FACTS)
        limit = int_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        min_confidence = confidence_param(params, "min_confidence")
        after = id_cursor(params)
        engine = self.state.graph_reads()
        nodes, last = await self.state.run(
            engine.facts_matching,
            params.get("subject"),
            params.get("predicate"),
            params.get("object"),
            min_confidence,
            limit,
            after,
        )
        return json_response(m.FactsPage(_nodes(nodes), encode_cursor("n", last)))

    async def entity(self, request: Request) -> Response:
        params = query(request, ENTITY)
        limit = int_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        subject_after = id_cursor(params, "subject_cursor")
        object_after = id_cursor(params, "object_cursor")
        name = request.path_params["name"]
        engine = self.state.graph_reads()
        found = await self.state.run(engine.entity, name, limit, subject_after, object_after)
        if found is None:
            raise ApiError(404, "no live fact mentions this entity", field="name")
        return json_response(
            m.EntityResponse(
                found.name,
                _nodes(found.as_subject),
                encode_cursor("n", found.as_subject_next),
                _nodes(found.as_object),
                encode_cursor("n", found.as_object_next),
                found.predicates,
            )
        )

    async def entities(self, request: Request) -> Response:
        params = query(request, ENTITIES)
        limit = int_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        after = _decode(params, "cursor", "e")
        engine = self.state.graph_reads()
        names, last = await self.state.run(engine.entities, params.get("prefix", ""), limit, after)
        return json_response(m.EntitiesPage(names, encode_cursor("e", last)))

    async def children(self, request: Request) -> Response:
        node_id = node_id_param(request)
        params = query(request, CHILDREN)
        limit = int_param(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        after = id_cursor(params)
        engine = self.state.graph_reads()
        page = await self.state.run(engine.children, node_id, limit, after)
        if page is None:
            raise ApiError(404, f"no node {node_id}", field="node_id")
        return json_response(m.ChildrenPage(node_id, _nodes(page[0]), encode_cursor("n", page[1])))

    async def ancestors(self, request: Request) -> Response:
        node_id = node_id_param(request)
        params = query(request, ANCESTORS)
        max_depth = int_param(params, "max_depth", MAX_DEPTH, MAX_DEPTH)
        engine = self.state.graph_reads()
        nodes = await self.state.run(engine.ancestors, node_id, max_depth)
        if nodes is None:
            raise ApiError(404, f"no node {node_id}", field="node_id")
        return json_response(m.AncestorsResponse(node_id, _nodes(nodes)))

    async def traverse(self, request: Request) -> Response:
        body = await read_json(request, m.TraverseRequest, self.state.settings.server.max_body_size)
        engine = self.state.graph_reads()
        found = await self.state.run(
            engine.traverse,
            body.start.entities,
            body.start.nodes,
            body.hops,
            body.direction,
            body.predicates,
            body.max_facts,
        )
        facts = [
            m.ReachedFact(r.node.node_id, _fact_out(r.node), r.node.parent, r.hop)
            for r in found.facts
        ]
        return json_response(m.TraverseResponse(facts, found.truncated, found.capped))
