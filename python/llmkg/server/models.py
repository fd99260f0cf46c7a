"""The shapes of request and response bodies. Requests are decoded (and type-checked) by
msgspec straight from bytes; the OpenAPI document is generated from these same types, so
it cannot drift from what the server accepts and answers."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from llmkg.config.schema import Precision
from llmkg.engine import traversal as tr

Confidence = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
NodeId = Annotated[int, msgspec.Meta(ge=1, lt=2**53)]


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    pass


class FactIn(Strict):
    """A fact to allocate: a (subject, predicate, object) triple and its confidence."""

    subject: str  # stored in canonical form: trimmed, whitespace runs as one space, case kept
    predicate: str
    object: str
    confidence: Confidence
    # a list of `scalability.hnsw.dimension` floats; without it the built-in embedder
    # embeds the fact
    embedding: list[float] | None = None


class AllocateRequest(Strict):
    fact: FactIn


class AllocateBatchRequest(Strict):
    facts: Annotated[list[FactIn], msgspec.Meta(min_length=1)]  # at most `allocation.max_batch`


class SearchFilter(Strict):
    """Only the nodes whose fact matches every given field (exact, canonical form)."""

    subject: str | None = None
    predicate: str | None = None
    object: str | None = None
    min_confidence: Confidence | None = None


Predicates = Annotated[list[str], msgspec.Meta(min_length=1, max_length=tr.MAX_PREDICATES)]


class SearchExpand(Strict):
    """The facts connected to the hits: a traversal from each hit's node in direction
    ``both``; facts that are hits themselves are left out, a fact reached from several
    hits is answered once, from the best-ranked."""

    hops: Annotated[int, msgspec.Meta(ge=1, le=tr.EXPAND_MAX_HOPS)] = 1
    max_facts: Annotated[int, msgspec.Meta(ge=1, le=tr.EXPAND_MAX_FACTS)] = tr.EXPAND_DEFAULT_FACTS
    predicates: Predicates | None = None  # only facts of these are followed


class SearchQuery(Strict):
    """What to search for: ``embedding`` or ``text``, one of them."""

    embedding: list[float] | None = None  # a list of `scalability.hnsw.dimension` floats
    text: str | None = None  # embedded by the built-in embedder
    k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10  # how many hits at most
    # the HNSW search breadth; null: `scalability.hnsw.ef_search`
    ef: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    filter: SearchFilter | None = None
    expand: SearchExpand | None = None


class SearchRequest(Strict):
    query: SearchQuery
    # partitioned: answer from the partitions that answered in time instead of 503
    allow_partial: bool = False


StartList = msgspec.Meta(min_length=1, max_length=tr.MAX_START)


class TraverseStart(Strict):
    """Where a traversal starts: ``entities`` or ``nodes``, one of them."""

    entities: Annotated[list[str], StartList] | None = None  # subjects or objects
    nodes: Annotated[list[NodeId], StartList] | None = None  # hop 0: their own facts


class TraverseRequest(Strict):
    """The live facts within a few hops of a start, breadth first."""

    start: TraverseStart
    hops: Annotated[int, msgspec.Meta(ge=1, le=tr.MAX_HOPS)] = 1
    # `out`: from subject to object; `in`: from object to subject; `both`: either
    direction: Literal["out", "in", "both"] = "out"
    predicates: Predicates | None = None  # only facts of these are followed
    max_facts: Annotated[int, msgspec.Meta(ge=1, le=tr.MAX_FACTS)] = tr.DEFAULT_FACTS


class RefreshRequest(Strict):
    refresh_token: str


# ---- responses ----------------------------------------------------------------------------


class Neighbor(msgspec.Struct):
    node_id: NodeId
    similarity: float  # for the cosine metric, cosine similarity: higher is closer


class Allocation(msgspec.Struct):
    """Where a fact was placed."""

    node_id: NodeId
    partition: int
    # the best candidate at or above `allocation.similarity_threshold`; null when none is
    parent: Neighbor | None
    neighbors: list[Neighbor]  # the nearest `allocation.neighbors` nodes
    # `direct`: an exact scan (below `allocation.direct_threshold` nodes); `hierarchical`:
    # HNSW; `partitioned`: the candidates of every partition of a partitioned graph
    strategy: Literal["direct", "hierarchical", "partitioned"]
    precision: Precision  # the precision its vector is indexed at
    confidence: Confidence
    created: bool  # `false`: the triple was stored already, and this is its node
    processing_time_ms: float


class AllocateBatchResponse(msgspec.Struct):
    results: list[Allocation]


class FactOut(msgspec.Struct):
    subject: str
    predicate: str
    object: str
    confidence: Confidence


class SearchHit(msgspec.Struct):
    """A hit: its node, as ``GET /api/v1/nodes/{node_id}`` answers it, and its score."""

    node_id: NodeId
    score: float  # at full precision; for the cosine metric, cosine similarity: higher is closer
    fact: FactOut
    parent: NodeId | None


class ExpandedFact(msgspec.Struct):
    node_id: NodeId
    fact: FactOut
    parent: NodeId | None
    hop: int  # from the source hit
    source: NodeId  # the hit it was reached from: the best-ranked one that reaches it


class PartitionsAnswered(msgspec.Struct):
    total: int
    answered: int


class SearchResponse(msgspec.Struct, omit_defaults=True):
    results: list[SearchHit]  # best first
    # with `expand` only (a search without it answers `results` alone): by the rank of
    # the source, then hop, then node id
    expanded: list[ExpandedFact] | None = None
    truncated: bool | None = None  # with `expand`: `max_facts` left reachable facts out
    # with `expand`: a hop read its cap of rows: facts within reach may be missing
    capped: bool | None = None
    # on a partitioned graph: how many partitions there are and how many answered
    partitions: PartitionsAnswered | None = None


class NodeResponse(msgspec.Struct):
    """A node: its fact and its parent's node id (null: a root)."""

    node_id: NodeId
    fact: FactOut
    parent: NodeId | None


class FactsPage(msgspec.Struct):
    facts: list[NodeResponse]
    next_cursor: str | None  # pass as `cursor` for the next page; null: the last page


class EntityResponse(msgspec.Struct):
    name: str
    as_subject: list[NodeResponse]  # a page of the facts with the name as subject, by id
    as_subject_next_cursor: str | None  # pass as `subject_cursor`; null: the last page
    as_object: list[NodeResponse]  # a page of the facts with the name as object, by id
    as_object_next_cursor: str | None  # pass as `object_cursor`; null: the last page
    # how many live facts of each predicate mention it (all of them, not only the pages')
    predicates: dict[str, int]


class EntitiesPage(msgspec.Struct):
    entities: list[str]  # in code point order (uppercase before lowercase)
    next_cursor: str | None  # pass as `cursor` for the next page; null: the last page


class ChildrenPage(msgspec.Struct):
    node_id: NodeId
    children: list[NodeResponse]  # by node id
    next_cursor: str | None  # pass as `cursor` for the next page; null: the last page


class AncestorsResponse(msgspec.Struct):
    node_id: NodeId
    ancestors: list[NodeResponse]  # the parent first, up to a root


class ReachedFact(msgspec.Struct):
    node_id: NodeId
    fact: FactOut
    parent: NodeId | None
    hop: int  # 0: a start node


class TraverseResponse(msgspec.Struct):
    facts: list[ReachedFact]  # by hop, then node id
    truncated: bool  # `max_facts` left reachable facts out (the walk went no further)
    capped: bool  # a hop read its cap of rows: facts within reach may be missing


class DeleteResponse(msgspec.Struct):
    node_id: NodeId
    deleted: bool


class CheckpointResponse(msgspec.Struct):
    sequence: int  # the store sequence the snapshot holds


class BackupResponse(msgspec.Struct):
    path: str  # the backup's folder, in `storage.backup_directory`
    nodes: int
    store_seq: int


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int  # seconds


class Check(msgspec.Struct, omit_defaults=True):
    ok: bool
    detail: str = ""


class HealthResponse(msgspec.Struct):
    status: Literal["ok", "ready", "not_ready", "draining", "starting"]
    checks: dict[str, Check] = msgspec.field(default_factory=dict)  # readiness: by name
    # readiness: the partition mode (`single-partition` or `partitioned`) and what it hosts
    partition: dict[str, Any] = msgspec.field(default_factory=dict)
