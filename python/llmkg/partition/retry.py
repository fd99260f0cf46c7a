"""When a call to a partition is tried again: on which status codes, and after how long.

Following gRPC's retry design (grpc/proposal A6): only codes that say the call may succeed
elsewhere or later are retried, each retry waits a growing, jittered delay, and no retry
(nor its wait) goes past the call's deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import grpc

# The peer could not take or finish the call; another replica (or a later try) may.
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
# What counts against a peer in its circuit breaker: it could not serve the call. A
# caller's mistake (INVALID_ARGUMENT, NOT_FOUND) says nothing bad of the peer.
PEER_FAILURES = RETRYABLE | {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
}

BackoffKind = Literal["exponential", "linear", "constant"]


@dataclass(frozen=True)
class Backoff:
    """The wait before retry ``n`` (1 for the first): ``base`` times 2**(n-1)
    (exponential), n (linear) or 1 (constant), at most ``cap``; then jittered into its
    upper half, so that callers that failed together do not retry together, while the
    wait still grows as the policy says."""

    kind: BackoffKind = "exponential"
    base: float = 0.025
    cap: float = 1.0

    def delay(self, retry: int, random: Callable[[], float]) -> float:
        if self.kind == "exponential":
            grown = self.base * 2 ** (retry - 1)
        elif self.kind == "linear":
            grown = self.base * retry
        else:
            grown = self.base
        ceiling = min(self.cap, grown)
        return float(ceiling / 2 + random() * ceiling / 2)
