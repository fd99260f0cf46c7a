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
    subject: str
    predicate: str
    object: str
    confidence: Confidence
    embedding: list[float] | None = None


class AllocateRequest(Strict):
    fact: FactIn


class AllocateBatchRequest(Strict):
    facts: Annotated[list[FactIn], msgspec.Meta(min_length=1)]


class SearchFilter(Strict):
    subject: str | None = None
    predicate: str | None = None
    object: str | None = None
    min_confidence: Confidence | None = None


Predicates = Annotated[list[str], msgspec.Meta(min_length=1, max_length=tr.MAX_PREDICATES)]


class SearchExpand(Strict):
    hops: Annotated[int, msgspec.Meta(ge=1, le=tr.EXPAND_MAX_HOPS)] = 1
    max_facts: Annotated[int, msgspec.Meta(ge=1, le=tr.EXPAND_MAX_FACTS)] = tr.EXPAND_DEFAULT_FACTS
    predicates: Predicates | None = None


class SearchQuery(Strict):
    embedding: list[float] | None = None
    text: str | None = None
    k: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    ef: Annotated[int, msgspec.Meta(ge=1, le=10_000)] | None = None
    filter: SearchFilter | None = None
    expand: SearchExpand | None = None


class SearchRequest(Strict):
    query: SearchQuery
    # Partitioned: answer from the partitions that answered in time instead of 503.
    allow_partial: bool = False


StartList = msgspec.Meta(min_length=1, max_length=tr.MAX_START)


class TraverseStart(Strict):
    entities: Annotated[list[str], StartList] | None = None
    nodes: Annotated[list[NodeId], StartList] | None = None


class TraverseRequest(Strict):
    start: TraverseStart
    hops: Annotated[int, msgspec.Meta(ge=1, le=tr.MAX_HOPS)] = 1
    direction: Literal["out", "in", "both"] = "out"
    predicates: Predicates | None = None
    max_facts: Annotated[int, msgspec.Meta(ge=1, le=tr.MAX_FACTS)] = tr.DEFAULT_FACTS


class RefreshRequest(Strict):
    refresh_token: str


# ---- responses ----------------------------------------------------------------------------


class Neighbor(msgspec.Struct):
    node_id: NodeId
    similarity: float


class Allocation(msgspec.Struct):
    node_id: NodeId
    partition: int
    parent: Neighbor | None
    neighbors: list[Neighbor]
    # "partitioned": the candidates of every partition of a partitioned graph
    strategy: Literal["direct", "hierarchical", "partitioned"]
    precision: Precision
    confidence: Confidence
    created: bool
    processing_time_ms: float


class AllocateBatchResponse(msgspec.Struct):
    results: list[Allocation]


class FactOut(msgspec.Struct):
    subject: str
    predicate: str
    object: str
    confidence: Confidence


class SearchHit(msgspec.Struct):
    node_id: NodeId
    score: float
    fact: FactOut
    parent: NodeId | None  # as GET /api/v1/nodes/{id} answers it


class ExpandedFact(msgspec.Struct):
    node_id: NodeId
    fact: FactOut
    parent: NodeId | None
    hop: int
    source: NodeId  # the hit it was reached from: the best-ranked one that reaches it


class PartitionsAnswered(msgspec.Struct):
    total: int
    answered: int


class SearchResponse(msgspec.Struct, omit_defaults=True):
    results: list[SearchHit]
    # With "expand" only: a search without it answers {"results": [...]} alone.
    expanded: list[ExpandedFact] | None = None
    truncated: bool | None = None
    capped: bool | None = None
    # On a partitioned graph: how many partitions there are and how many answered.
    partitions: PartitionsAnswered | None = None


class NodeResponse(msgspec.Struct):
    node_id: NodeId
    fact: FactOut
    parent: NodeId | None


class FactsPage(msgspec.Struct):
    facts: list[NodeResponse]
    next_cursor: str | None  # pass as ``cursor`` for the next page; null: the last page


class EntityResponse(msgspec.Struct):
    name: str
    as_subject: list[NodeResponse]
    as_subject_next_cursor: str | None
    as_object: list[NodeResponse]
    as_object_next_cursor: str | None
    predicates: dict[str, int]


class EntitiesPage(msgspec.Struct):
    entities: list[str]
    next_cursor: str | None


class ChildrenPage(msgspec.Struct):
    node_id: NodeId
    children: list[NodeResponse]
    next_cursor: str | None


class AncestorsResponse(msgspec.Struct):
    node_id: NodeId
    ancestors: list[NodeResponse]  # nearest first


class ReachedFact(msgspec.Struct):
    node_id: NodeId
    fact: FactOut
    parent: NodeId | None
    hop: int  # 0: a start node


class TraverseResponse(msgspec.Struct):
    facts: list[ReachedFact]  # by hop, then node id
    truncated: bool  # max_facts left reachable facts out
    capped: bool  # a hop read its cap of rows: facts within reach may be missing


class DeleteResponse(msgspec.Struct):
    node_id: NodeId
    deleted: bool


class CheckpointResponse(msgspec.Struct):
    sequence: int


class BackupResponse(msgspec.Struct):
    path: str
    nodes: int
    store_seq: int


class TokenResponse(msgspec.Struct):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int


class Check(msgspec.Struct, omit_defaults=True):
    ok: bool
    detail: str = ""


class HealthResponse(msgspec.Struct):
    status: Literal["ok", "ready", "not_ready", "draining", "starting"]
    checks: dict[str, Check] = msgspec.field(default_factory=dict)
    partition: dict[str, Any] = msgspec.field(default_factory=dict)
