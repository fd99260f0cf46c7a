"""Between the wire and Python: vectors as packed little-endian float32, the checks of a
request's fields (a ``FactError`` naming the field, as the message spells it), and the
engine's structs to and from their messages."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

import numpy as np

from llmkg.config.schema import Dimension, SearchBeam
from llmkg.engine.config import MAX_K
from llmkg.engine.facts import MAX_TEXT_LENGTH, FactError
from llmkg.engine.results import Neighbor, Node, SearchHit
from llmkg.partition.types import HealthInfo, PartitionStatus
from llmkg.partition.v1 import partition_pb2 as pb

if TYPE_CHECKING:
    from llmkg.config import Settings

FILTER_TEXT_FIELDS = ("subject", "predicate", "object")
# The bounds of the config's types, read from them (a bound is written once, in schema.py).
MAX_DIMENSION: int = get_args(Dimension)[1].le
MAX_EF: int = get_args(SearchBeam)[1].le


@dataclass(frozen=True)
class Limits:
    """What a request may ask: the graph's dimension, and the engine's bounds."""

    dimension: int
    max_k: int = MAX_K
    max_ef: int = MAX_EF
    max_text_length: int = MAX_TEXT_LENGTH

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            dimension=settings.scalability.hnsw.dimension,
            max_text_length=settings.allocation.max_text_length,
        )


def pack_vector(vector: Any) -> bytes:
    """A 1-D vector as the wire carries it: float32, little-endian, packed."""
    array = np.asarray(vector, dtype="<f4")
    if array.ndim != 1:
        raise ValueError(f"a vector must be one-dimensional, not of shape {array.shape}")
    return array.tobytes()


def unpack_vector(data: bytes, limits: Limits, field: str = "vector") -> np.ndarray:
    """The request's vector as a read-only float32 array (no copy on little-endian
    machines), checked: the graph's dimension, finite values."""
    if len(data) % 4:
        raise FactError(field, f"{len(data)} bytes: not a whole number of float32 values")
    if len(data) // 4 != limits.dimension:
        raise FactError(
            field, f"{len(data) // 4} values; the graph's dimension is {limits.dimension}"
        )
    vector = np.frombuffer(data, dtype="<f4").astype(np.float32, copy=False)
    if not np.isfinite(vector).all():
        raise FactError(field, "holds NaN or infinite values")
    return vector


def check_k(k: int, limits: Limits, field: str = "k") -> int:
    if not 1 <= k <= limits.max_k:
        raise FactError(field, f"{k}: must be from 1 to {limits.max_k}")
    return k


def check_ef(request: pb.SearchRequest, limits: Limits) -> int | None:
    if not request.HasField("ef"):
        return None
    if not 1 <= request.ef <= limits.max_ef:
        raise FactError("ef", f"{request.ef}: must be from 1 to {limits.max_ef}")
    return request.ef


def filter_of(request: pb.SearchRequest, limits: Limits) -> dict[str, Any] | None:
    """The set fields of the request's filter, as ``AllocationEngine.search`` takes them."""
    if not request.HasField("filter"):
        return None
    given = request.filter
    chosen: dict[str, Any] = {}
    for name in FILTER_TEXT_FIELDS:
        if given.HasField(name):
            value = getattr(given, name)
            if len(value) > limits.max_text_length:
                raise FactError(
                    f"filter.{name}", f"longer than {limits.max_text_length} characters"
                )
            chosen[name] = value
    if given.HasField("min_confidence"):
        floor = given.min_confidence
        if not (math.isfinite(floor) and 0.0 <= floor <= 1.0):
            raise FactError("filter.min_confidence", f"{floor}: must be from 0 to 1")
        chosen["min_confidence"] = floor
    return chosen or None


def filter_message(filter: Mapping[str, Any] | None) -> pb.Filter | None:
    """A filter mapping (the engine's keys) as its message; unknown keys are refused."""
    if not filter:
        return None
    unknown = set(filter) - {*FILTER_TEXT_FIELDS, "min_confidence"}
    if unknown:
        raise ValueError(f"unknown filter keys: {sorted(unknown)}")
    return pb.Filter(**filter)


def node_message(node: Node) -> pb.Node:
    return pb.Node(
        node_id=node.node_id,
        subject=node.subject,
        predicate=node.predicate,
        object=node.object,
        confidence=node.confidence,
        parent=node.parent,
    )


def node_of(message: pb.Node) -> Node:
    return Node(
        node_id=message.node_id,
        subject=message.subject,
        predicate=message.predicate,
        object=message.object,
        confidence=message.confidence,
        parent=message.parent if message.HasField("parent") else None,
    )


def search_response(hits: Any) -> pb.SearchResponse:
    return pb.SearchResponse(
        hits=[pb.Hit(score=hit.score, node=node_message(hit.node)) for hit in hits]
    )


def hits_of(response: pb.SearchResponse) -> list[SearchHit]:
    return [SearchHit(h.node.node_id, h.score, node_of(h.node)) for h in response.hits]


def candidates_response(neighbors: Any) -> pb.CandidatesResponse:
    return pb.CandidatesResponse(
        candidates=[pb.Candidate(node_id=n.node_id, similarity=n.similarity) for n in neighbors]
    )


def candidates_of(response: pb.CandidatesResponse) -> list[Neighbor]:
    return [Neighbor(c.node_id, c.similarity) for c in response.candidates]


def health_response(info: HealthInfo) -> pb.HealthResponse:
    return pb.HealthResponse(
        pod=info.pod,
        zone=info.zone,
        partitions=[
            pb.PartitionStatus(
                partition=s.partition, ready=s.ready, applied_seq=s.applied_seq, lag=s.lag
            )
            for s in info.partitions
        ],
    )


def health_of(response: pb.HealthResponse) -> HealthInfo:
    return HealthInfo(
        pod=response.pod,
        zone=response.zone,
        partitions=[
            PartitionStatus(s.partition, s.ready, s.applied_seq, s.lag) for s in response.partitions
        ],
    )
