"""What the partition service exchanges, in Python: the handlers a pod serves the service
with (``PartitionHandlers``, implemented over its engines), what they answer, the errors
they raise, and the error a caller gets (``PartitionCallError``).

Hits, candidates and nodes are the engine's own structs (``SearchHit``, ``Neighbor``,
``Node``), so that a handler returns what ``AllocationEngine`` answers as it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import numpy as np

from llmkg.engine.results import Neighbor, Node, SearchHit

if TYPE_CHECKING:
    # Only named in annotations: a server that serves no partitions (the embedded
    # default) imports this module for its error types and never loads gRPC (9 MB).
    import grpc

__all__ = [
    "HealthInfo",
    "Neighbor",
    "Node",
    "PartitionCallError",
    "PartitionHandlers",
    "PartitionNotHostedError",
    "PartitionOverloadedError",
    "PartitionStatus",
    "PartitionUnavailableError",
    "SearchHit",
]


class PartitionStatus(msgspec.Struct, frozen=True):
    partition: int
    ready: bool  # caught up with the database: it answers reads
    applied_seq: int  # the last sequence number applied to the partition's index
    lag: int  # sequence numbers committed in the database, not yet applied


class HealthInfo(msgspec.Struct, frozen=True):
    pod: str
    zone: str
    partitions: list[PartitionStatus]


class PartitionHandlers(Protocol):
    """What a pod does for the partition service, one method per call. They block (they
    run on the server's worker threads) and raise ``PartitionNotHostedError``,
    ``PartitionUnavailableError``, ``PartitionOverloadedError`` or the engine's errors
    (``FactError`` names a bad field; ``NotCaughtUpError``, ``EngineClosedError``,
    ``LinkerError`` and ``StoreError`` say the partition cannot answer now).

    The server has checked the request's fields before a handler runs: the partition is
    hosted, ``vector`` has the graph's dimension of finite values, ``k`` and ``ef`` are in
    range, the filter's strings are not too long."""

    def hosts(self, partition: int) -> bool:
        """Whether this pod serves ``partition`` (else the call answers NOT_FOUND)."""
        ...

    def search(
        self,
        partition: int,
        vector: np.ndarray,
        k: int,
        ef: int | None,
        filter: Mapping[str, Any] | None,
    ) -> Sequence[SearchHit]:
        """``AllocationEngine.search(vector, k=k, ef=ef, filter=filter)`` of the
        partition. ``vector`` is a read-only float32 array; ``filter`` holds only the
        fields the caller set (None if none)."""
        ...

    def candidates(self, partition: int, vector: np.ndarray, k: int) -> Sequence[Neighbor]:
        """The ``k`` nodes nearest ``vector``, best first: where a new fact could go."""
        ...

    def get(self, partition: int, node_id: int) -> Node | None: ...

    def nudge(self, partition: int, seq: int) -> None:
        """The database holds the partition's rows up to ``seq``: apply them soon."""
        ...

    def health(self) -> HealthInfo: ...


class PartitionNotHostedError(LookupError):
    """The pod does not serve this partition (NOT_FOUND)."""


class PartitionUnavailableError(RuntimeError):
    """The partition cannot answer now, another replica may (UNAVAILABLE)."""


class PartitionOverloadedError(RuntimeError):
    """The pod is too busy to take the call (RESOURCE_EXHAUSTED)."""


class PartitionCallError(Exception):
    """A call to a partition that failed, after its retries: the last attempt's gRPC
    status ``code``, its message, the bad ``field`` of an INVALID_ARGUMENT, and the peer
    that answered last (None if no replica was tried)."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        partition: int | None = None,
        peer: str | None = None,
        field: str | None = None,
        attempts: int = 0,
    ) -> None:
        where = f"partition {partition}" if partition is not None else "partition service"
        by = f" at {peer}" if peer else ""
        super().__init__(f"{where}{by}: {code.name}: {message}")
        self.code = code
        self.message = message
        self.partition = partition
        self.peer = peer
        self.field = field
        self.attempts = attempts
