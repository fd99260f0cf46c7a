"""The partition service: the gRPC layer between the pods that host partitions of the
graph and the routers that fan requests out to them.

- ``PartitionServer`` serves ``PartitionHandlers`` (a pod's engines) on
  ``server.grpc_port``, with the standard gRPC health service;
- ``PeerPool`` calls the peers: deadlines, retries with backoff, a circuit breaker per
  peer, same-zone and least-loaded replica choice, and ``fan_out`` over all partitions.

The service is defined in ``proto/llmkg/partition/v1/partition.proto``; its generated code
is ``llmkg.partition.v1``. See docs/design.md, "The partition service".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Where each name lives, loaded on first use (PEP 562): the server imports the error types
# of ``llmkg.partition.types`` whether or not it serves partitions, and an embedded server
# should not pay for gRPC, protobuf and the generated code (17 MB resident) for that.
_HOMES = {
    "BreakerState": "breaker",
    "CircuitBreaker": "breaker",
    "Limits": "codec",
    "pack_vector": "codec",
    "FanOut": "peers",
    "PeerPool": "peers",
    "BreakerSettings": "registry",
    "Peer": "registry",
    "PeerSpec": "registry",
    "RETRYABLE": "retry",
    "Backoff": "retry",
    "PartitionServer": "server",
    "HealthInfo": "types",
    "PartitionCallError": "types",
    "PartitionHandlers": "types",
    "PartitionNotHostedError": "types",
    "PartitionOverloadedError": "types",
    "PartitionStatus": "types",
    "PartitionUnavailableError": "types",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        # Not a name of ours: `from llmkg.partition import codec` then imports the module.
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


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
