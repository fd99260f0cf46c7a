"""Token-bucket rate limits by key (a subject or a client address), on an injectable
monotonic clock so that tests move time instead of sleeping."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from llmkg import ShardedCache
from llmkg.server.errors import ApiError

Clock = Callable[[], float]
RATE_LIMIT_KEYS = 100_000  # buckets kept (least recently used beyond are forgotten)


class RateLimiter:
    """Token buckets by key: ``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate, self.burst = rate, float(burst)
        self.clock = clock
        self.buckets = ShardedCache(RATE_LIMIT_KEYS, policy="lru")
        self.lock = threading.Lock()

    def _level(self, key: str, now: float) -> float:
        tokens, last = self.buckets.get(key) or (self.burst, now)
        return float(min(self.burst, tokens + (now - last) * self.rate))

    def take(self, key: str) -> float:
        """0 when a request may go now (it takes a token), else the seconds until it may."""
        now = self.clock()
        with self.lock:
            tokens = self._level(key, now)
            if tokens >= 1.0:
                self.buckets.put(key, (tokens - 1.0, now))
                return 0.0
            self.buckets.put(key, (tokens, now))
            return (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """The seconds until ``key`` has a token again (0: it has one); takes none."""
        with self.lock:
            tokens = self._level(key, self.clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate


def per_minute(count: int, clock: Clock = time.monotonic) -> RateLimiter | None:
    """``count`` at once, then refilled over a minute; None when ``count`` is 0 (no limit)."""
    return RateLimiter(count / 60.0, count, clock) if count > 0 else None


def too_many(wait: float, message: str = "over the rate limit") -> ApiError:
    return ApiError(429, message, headers={"Retry-After": str(max(1, math.ceil(wait)))})
