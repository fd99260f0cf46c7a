"""The API's routes as data: each function builds the ``Call`` of one route (method, path,
query, JSON body, whether it may be sent twice) with the decoder of its answer. Both
clients send these same calls, so a new route is one function here and a one-line method
in each client (a paged one adds an iterator over ``pages``; a streamed one, such as an
NDJSON export, goes through the clients' ``_stream``, which decodes each line).

Answers are decoded by msgspec into the server's own response structs
(``llmkg.server.models``, which the OpenAPI document is generated from), then shaped
into the engine's result types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import quote

import msgspec
import numpy as np

from llmkg.client.types import (
    AccessToken,
    Backup,
    Entity,
    FactInput,
    Health,
    SearchExpand,
    SearchFilter,
    Vector,
)
from llmkg.engine.exchange import ExportedFact
from llmkg.engine.facts import Fact
from llmkg.engine.results import (
    AllocationResult,
    ExpandedFact,
    ExpandedSearch,
    Node,
    Reached,
    SearchHit,
    Traversal,
)
from llmkg.server import models as m

T = TypeVar("T")
Page = tuple[list[T], str | None]  # a page of a listing and the cursor of the next one
Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Call(Generic[T]):
    """One request and how to read its answer.

    ``idempotent``: sending it twice does what sending it once does, so a 429 or 503 may
    be retried. ``authorized``: it carries the access token. ``absent``: the answer to a
    404 that names a request field (no such node or entity), as the engine answers None
    or False; a 404 without a field (no such route) stays an error."""

    method: str
    path: str
    decode: Callable[[bytes], T]
    params: Params = ()
    body: bytes | None = None
    idempotent: bool = True
    authorized: bool = True
    absent: Callable[[], T] | None = None
    answers: frozenset[int] = frozenset({200})  # statuses whose body ``decode`` reads


def _decoder(kind: type[T]) -> Callable[[bytes], T]:
    return msgspec.json.Decoder(kind).decode


def _json(body: object) -> bytes:
    return msgspec.json.encode(body)


def _params(**given: str | int | float | None) -> Params:
    out: list[tuple[str, str]] = []
    for key, value in given.items():
        if value is None:
            continue
        # repr: the shortest form that reads back as the same float ("0.5", "1e-05").
        out.append((key, repr(float(value)) if isinstance(value, float) else str(value)))
    return tuple(out)


def node(n: m.NodeResponse | m.SearchHit | m.ReachedFact | m.ExpandedFact) -> Node:
    f = n.fact
    return Node(n.node_id, f.subject, f.predicate, f.object, f.confidence, n.parent)


def _list(values: object) -> object:
    """A sequence as a JSON array (msgspec encodes no ``range`` or other ``Sequence``). A
    str, a number... go as they are, for the server to refuse (422 naming the field),
    as the engine does: ``list("Pho")`` would walk from "P", "h" and "o"."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        return values
    return list(values)


def _vector(v: Vector) -> list[float]:
    # msgspec encodes Python floats, not numpy scalars: an array goes through tolist().
    if isinstance(v, np.ndarray):
        return [float(x) for x in v.tolist()]
    return [float(x) for x in v]


def _fact(fact: FactInput | Fact) -> dict[str, object]:
    embedding: Vector | None
    if isinstance(fact, Fact):
        out: dict[str, object] = {
            "subject": fact.subject,
            "predicate": fact.predicate,
            "object": fact.object,
            "confidence": fact.confidence,
        }
        embedding = fact.embedding
    else:
        # Every key goes through, unknown ones too: the server names them (422), as the
        # engine does.
        out = {k: v for k, v in fact.items() if k != "embedding"}
        embedding = fact.get("embedding")
    if embedding is not None:
        out["embedding"] = _vector(embedding)
    return out


# ---- writes --------------------------------------------------------------------------------

_ALLOCATION = _decoder(AllocationResult)


class _Batch(msgspec.Struct):
    results: list[AllocationResult]


_BATCH = _decoder(_Batch)


def allocate(fact: FactInput | Fact) -> Call[AllocationResult]:
    # Idempotent: a triple already stored keeps its node and its confidence becomes the
    # larger of the two, so a second send changes nothing (``AllocationEngine.allocate``);
    # and a 429 or 503 answers before anything was committed. A retry after a lost first
    # answer may say ``created=False`` for the node the first one created.
    body = _json({"fact": _fact(fact)})
    return Call("POST", "/api/v1/allocate", _ALLOCATION, body=body)


def allocate_many(facts: Iterable[FactInput | Fact]) -> Call[list[AllocationResult]]:
    body = _json({"facts": [_fact(f) for f in facts]})
    return Call("POST", "/api/v1/allocate/batch", lambda b: _BATCH(b).results, body=body)


_DELETED = _decoder(m.DeleteResponse)


def delete(node_id: int) -> Call[bool]:
    # Not idempotent in its answer: a second send after a first that was served says 404.
    return Call(
        "DELETE",
        f"/api/v1/nodes/{node_id}",
        lambda b: _DELETED(b).deleted,
        idempotent=False,
        absent=lambda: False,
    )


# ---- reads ---------------------------------------------------------------------------------

_SEARCH = _decoder(m.SearchResponse)


def _hits(answer: m.SearchResponse) -> list[SearchHit]:
    return [SearchHit(h.node_id, h.score, node(h)) for h in answer.results]


def _expanded(body: bytes) -> ExpandedSearch:
    answer = _SEARCH(body)
    if answer.expanded is None or answer.truncated is None or answer.capped is None:
        # Not what the API answers to an expanded search (read_answer reports it).
        raise msgspec.DecodeError("a search with expand answered no expansion")
    expanded = [ExpandedFact(e.source, e.hop, node(e)) for e in answer.expanded]
    return ExpandedSearch(_hits(answer), expanded, answer.truncated, answer.capped)


def _query(
    embedding: Vector | None,
    text: str | None,
    k: int,
    ef: int | None,
    filter: SearchFilter | Mapping[str, str | float] | None,
) -> dict[str, object]:
    query: dict[str, object] = {"k": k}
    if embedding is not None:
        query["embedding"] = _vector(embedding)
    if text is not None:
        query["text"] = text
    if ef is not None:
        query["ef"] = ef
    if filter:
        query["filter"] = dict(filter)
    return query


def search(
    embedding: Vector | None,
    text: str | None,
    k: int,
    ef: int | None,
    filter: SearchFilter | Mapping[str, str | float] | None,
) -> Call[list[SearchHit]]:
    # A read, sent as POST for its body: safe to send twice.
    body = _json({"query": _query(embedding, text, k, ef, filter)})
    return Call("POST", "/api/v1/search", lambda b: _hits(_SEARCH(b)), body=body)


def search_expanded(
    embedding: Vector | None,
    text: str | None,
    k: int,
    ef: int | None,
    filter: SearchFilter | Mapping[str, str | float] | None,
    expand: SearchExpand | Mapping[str, object],
) -> Call[ExpandedSearch]:
    """``search`` with ``expand``: an empty one expands with the server's defaults, as
    the engine's ``expand={}`` does. Its keys go through as given (the server names an
    unknown one, 422 ``query.expand.<key>``)."""
    expansion = {
        key: _list(value) if key == "predicates" else value for key, value in expand.items()
    }
    query = {**_query(embedding, text, k, ef, filter), "expand": expansion}
    return Call("POST", "/api/v1/search", _expanded, body=_json({"query": query}))


_NODE = _decoder(m.NodeResponse)


def get(node_id: int) -> Call[Node | None]:
    return Call("GET", f"/api/v1/nodes/{node_id}", lambda b: node(_NODE(b)), absent=lambda: None)


_FACTS = _decoder(m.FactsPage)


def facts_matching(
    subject: str | None,
    predicate: str | None,
    object: str | None,
    min_confidence: float | None,
    limit: int | None,
    after: str | None,
) -> Call[Page[Node]]:
    def decode(body: bytes) -> Page[Node]:
        page = _FACTS(body)
        return [node(n) for n in page.facts], page.next_cursor

    params = _params(
        subject=subject,
        predicate=predicate,
        object=object,
        min_confidence=min_confidence,
        limit=limit,
        cursor=after,
    )
    return Call("GET", "/api/v1/facts", decode, params)


_ENTITY = _decoder(m.EntityResponse)


def _entity(body: bytes) -> Entity:
    e = _ENTITY(body)
    return Entity(
        e.name,
        [node(n) for n in e.as_subject],
        e.as_subject_next_cursor,
        [node(n) for n in e.as_object],
        e.as_object_next_cursor,
        e.predicates,
    )


def entity(
    name: str, limit: int | None, subject_after: str | None, object_after: str | None
) -> Call[Entity | None]:
    # A name may hold a slash: escaped (%2F), the server's {name:path} takes it whole.
    path = f"/api/v1/entities/{quote(name, safe='')}"
    params = _params(limit=limit, subject_cursor=subject_after, object_cursor=object_after)
    return Call("GET", path, _entity, params, absent=lambda: None)


_ENTITIES = _decoder(m.EntitiesPage)


def entities(prefix: str, limit: int | None, after: str | None) -> Call[Page[str]]:
    def decode(body: bytes) -> Page[str]:
        page = _ENTITIES(body)
        return page.entities, page.next_cursor

    params = _params(prefix=prefix or None, limit=limit, cursor=after)
    return Call("GET", "/api/v1/entities", decode, params)


_CHILDREN = _decoder(m.ChildrenPage)


def _children(body: bytes) -> Page[Node]:
    page = _CHILDREN(body)
    return [node(n) for n in page.children], page.next_cursor


def children(node_id: int, limit: int | None, after: str | None) -> Call[Page[Node] | None]:
    params = _params(limit=limit, cursor=after)
    path = f"/api/v1/nodes/{node_id}/children"
    return Call("GET", path, _children, params, absent=lambda: None)


def children_pages(node_id: int, limit: int | None, after: str | None) -> Call[Page[Node]]:
    """``children`` for an iterator: a node gone midway is an error, not an empty page."""
    params = _params(limit=limit, cursor=after)
    return Call("GET", f"/api/v1/nodes/{node_id}/children", _children, params)


_ANCESTORS = _decoder(m.AncestorsResponse)


def ancestors(node_id: int, max_depth: int | None) -> Call[list[Node] | None]:
    def decode(body: bytes) -> list[Node]:
        return [node(n) for n in _ANCESTORS(body).ancestors]

    params = _params(max_depth=max_depth)
    return Call("GET", f"/api/v1/nodes/{node_id}/ancestors", decode, params, absent=lambda: None)


_TRAVERSAL = _decoder(m.TraverseResponse)


def _traversal(body: bytes) -> Traversal:
    answer = _TRAVERSAL(body)
    return Traversal(
        [Reached(r.hop, node(r)) for r in answer.facts], answer.truncated, answer.capped
    )


def traverse(
    entities: Sequence[str] | None,
    nodes: Sequence[int] | None,
    hops: int,
    direction: str,
    predicates: Sequence[str] | None,
    max_facts: int,
) -> Call[Traversal]:
    # Neither or both starts go as given: the server refuses them (422 "start"), as the
    # engine does, rather than the client guessing.
    start: dict[str, object] = {}
    if entities is not None:
        start["entities"] = _list(entities)
    if nodes is not None:
        start["nodes"] = _list(nodes)
    body: dict[str, object] = {
        "start": start,
        "hops": hops,
        "direction": direction,
        "max_facts": max_facts,
    }
    if predicates is not None:
        body["predicates"] = _list(predicates)
    # A read, sent as POST for its body: safe to send twice.
    return Call("POST", "/api/v1/traverse", _traversal, body=_json(body))


_EXPORTED = _decoder(ExportedFact)


def export(embedding: bool) -> Call[ExportedFact]:
    """One line of the NDJSON export (the clients' ``_stream`` reads it line by line)."""
    # "true" only: the server takes true/false, not Python's True.
    params: Params = (("embedding", "true"),) if embedding else ()
    return Call("GET", "/api/v1/export", _EXPORTED, params)


# ---- probes, tokens, administration --------------------------------------------------------

_HEALTH = _decoder(Health)


def live() -> Call[Health]:
    return Call("GET", "/health/live", _HEALTH, authorized=False)


def ready() -> Call[Health]:
    # Not ready is an answer (503 with the same body), not an error to retry.
    return Call("GET", "/health/ready", _HEALTH, authorized=False, answers=frozenset({200, 503}))


_ACCESS = _decoder(AccessToken)


def refresh(refresh_token: str) -> Call[AccessToken]:
    # Mints a token and changes nothing: safe to send twice.
    body = _json({"refresh_token": refresh_token})
    return Call("POST", "/api/v1/auth/refresh", _ACCESS, body=body, authorized=False)


_STATS = msgspec.json.Decoder(dict[str, object]).decode


def stats() -> Call[dict[str, object]]:
    return Call("GET", "/api/v1/stats", _STATS)


_CHECKPOINT = _decoder(m.CheckpointResponse)


def checkpoint() -> Call[int]:
    # Not retried: each one writes a snapshot.
    return Call(
        "POST", "/api/v1/admin/checkpoint", lambda b: _CHECKPOINT(b).sequence, idempotent=False
    )


_BACKUP = _decoder(Backup)


def backup() -> Call[Backup]:
    # Not retried: each one writes a backup folder.
    return Call("POST", "/api/v1/admin/backup", _BACKUP, idempotent=False)
