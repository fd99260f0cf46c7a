"""When a call tries again: the decisions both clients share, free of I/O so that the
synchronous and the asynchronous client cannot drift apart.

Only 429 and 503 are retried: the server answers them before doing anything (a rate
limit, a server loading or draining) or when a write committed nothing (the store or the
index linker failing), with ``Retry-After``. And only calls that are safe to send twice
(``Call.idempotent``): reads, searches and allocations (the same triple keeps its node;
see ``calls.allocate``). Every wait fits in the call's deadline: a ``Retry-After`` past
it ends the call with the server's error at once rather than after a useless wait.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from llmkg.client.errors import ApiError, ApiTimeoutError

RETRIED_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` tries after the first; the n-th (from 0) waits ``backoff * 2**n``
    seconds capped at ``max_backoff``, times a random factor from 0.5 to 1 (jitter: clients
    refused together come back apart), and at least the answer's ``Retry-After``."""

    max_retries: int = 3
    backoff: float = 0.2
    max_backoff: float = 10.0
    # Draws from [0, 1); tests pass a fixed one.
    jitter: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be at least 0")
        if not 0 <= self.backoff <= self.max_backoff:
            raise ValueError("backoff must be from 0 to max_backoff")

    def wait(self, retry: int, retry_after: float | None) -> float:
        """The seconds before retry number ``retry`` (from 0)."""
        base = min(self.max_backoff, self.backoff * 2.0**retry)
        jittered = base * (0.5 + 0.5 * self.jitter())
        return jittered if retry_after is None else max(jittered, retry_after)


NO_RETRIES = RetryPolicy(max_retries=0)


class Attempts:
    """The attempts of one call: its deadline, its retries, and its one token refresh."""

    def __init__(
        self,
        policy: RetryPolicy,
        idempotent: bool,
        authorized: bool,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.policy, self.idempotent, self.clock = policy, idempotent, clock
        self.authorized = authorized
        self.timeout = timeout
        self.deadline = clock() + timeout
        self.retries = 0
        self.refreshed = False

    def remaining(self) -> float:
        """Seconds left for the next attempt; ``ApiTimeoutError`` when none are."""
        left = self.deadline - self.clock()
        if left <= 0:
            raise ApiTimeoutError(f"no answer within the call's timeout ({self.timeout:g} s)")
        return left

    def should_refresh(self, error: ApiError, can_refresh: bool) -> bool:
        """Once per call that sent the access token, on a 401 saying that it expired, when
        the client holds a refresh token. Any such call: the refused request was not
        served. (Not the refresh itself: its 401 says that the refresh token expired.)"""
        if self.refreshed or not can_refresh or not self.authorized:
            return False
        if error.status == 401 and error.code == "token_expired":
            self.refreshed = True
            return True
        return False

    def retry_wait(self, error: ApiError) -> float | None:
        """The seconds to wait before trying ``error``'s call again, or None: raise it."""
        if not self.idempotent or error.status not in RETRIED_STATUSES:
            return None
        if self.retries >= self.policy.max_retries:
            return None
        wait = self.policy.wait(self.retries, error.retry_after)
        if self.clock() + wait >= self.deadline:
            return None
        self.retries += 1
        return wait
