"""The partition service: the gRPC layer between the pods that host partitions of the
graph and the routers that fan requests out to them.

- ``PartitionServer`` serves ``PartitionHandlers`` (a pod's engines) on
  ``server.grpc_port``, with the standard gRPC health service;
- ``PeerPool`` calls the peers: deadlines, retries with backoff, a circuit breaker per
  peer, same-zone and least-loaded replica choice, and ``fan_out`` over all partitions.

The service is defined in ``proto/llmkg/partition/v1/partition.proto``; its generated code
is ``llmkg.partition.v1``. See docs/design.md, "The partition service".
"""

from llmkg.partition.breaker import BreakerState, CircuitBreaker
from llmkg.partition.codec import Limits, pack_vector
from llmkg.partition.peers import FanOut, PeerPool
from llmkg.partition.registry import BreakerSettings, Peer, PeerSpec
from llmkg.partition.retry import RETRYABLE, Backoff
from llmkg.partition.server import PartitionServer
from llmkg.partition.types import (
    HealthInfo,
    PartitionCallError,
    PartitionHandlers,
    PartitionNotHostedError,
    PartitionOverloadedError,
    PartitionStatus,
    PartitionUnavailableError,
)

__all__ = [
    "RETRYABLE",
    "Backoff",
    "BreakerSettings",
    "BreakerState",
    "CircuitBreaker",
    "FanOut",
    "HealthInfo",
    "Limits",
    "PartitionCallError",
    "PartitionHandlers",
    "PartitionNotHostedError",
    "PartitionOverloadedError",
    "PartitionServer",
    "PartitionStatus",
    "PartitionUnavailableError",
    "Peer",
    "PeerPool",
    "PeerSpec",
    "pack_vector",
]
