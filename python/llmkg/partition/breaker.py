"""A circuit breaker per peer: stop sending calls to a peer that fails most of them, try it
again after a while.

- **Closed**: calls go through; their outcomes are counted over a sliding window of
  ``window`` seconds (in ``buckets`` slices, so memory does not grow with the call rate).
  Once the window holds at least ``minimum_calls`` calls and ``threshold`` percent or more
  of them failed, the breaker opens (a failure: the peer could not serve, see
  ``peers.PEER_FAILURES``; a caller's bad argument is no failure of the peer).
- **Open**: no call goes to the peer for ``open_for`` seconds.
- **Half-open**: then up to ``trial_calls`` calls at a time go through as trials; a trial
  that succeeds closes the breaker (with an empty window), one that fails opens it again.

Outcomes of calls let through before the last change of state (a slow call that started
while closed and ends after the breaker opened) are ignored: each permit carries the
state's generation. The clock is injected, so the tests drive time by hand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

log = logging.getLogger("llmkg.partition")


class BreakerState(IntEnum):
    """The values of the ``llmkg_circuit_breaker_state`` gauge."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class Permit:
    """Leave to make one call; hand it back with ``record`` or ``release``."""

    generation: int
    trial: bool


class CircuitBreaker:
    def __init__(
        self,
        threshold: float,
        open_for: float,
        *,
        window: float = 10.0,
        buckets: int = 10,
        minimum_calls: int = 10,
        trial_calls: int = 1,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        self.threshold = threshold  # percent of the window's calls
        self.open_for = open_for
        self.minimum_calls = minimum_calls
        self.trial_calls = trial_calls
        self.clock = clock
        self.name = name
        self._width = window / buckets
        self._slots = [-1] * buckets  # the time slice each bucket counts now
        self._calls = [0] * buckets
        self._failures = [0] * buckets
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._opened_at = 0.0
        self._trials = 0  # trial calls under way

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current(self.clock())

    def allow(self) -> Permit | None:
        """A permit for one call, or None: the breaker is open (or half-open with its
        trial calls under way)."""
        with self._lock:
            state = self._current(self.clock())
            if state is BreakerState.CLOSED:
                return Permit(self._generation, trial=False)
            if state is BreakerState.HALF_OPEN and self._trials < self.trial_calls:
                self._trials += 1
                return Permit(self._generation, trial=True)
            return None

    def record(self, permit: Permit, failed: bool) -> None:
        """The outcome of a call made under ``permit``."""
        with self._lock:
            now = self.clock()
            self._current(now)
            if permit.generation != self._generation:
                return  # let through before the last change of state
            if permit.trial:
                self._trials -= 1
                self._move(BreakerState.OPEN if failed else BreakerState.CLOSED, now)
                return
            self._count(now, failed)
            if failed:
                calls, failures = self._totals(now)
                if calls >= self.minimum_calls and failures * 100 >= self.threshold * calls:
                    self._move(BreakerState.OPEN, now)

    def release(self, permit: Permit) -> None:
        """A call made under ``permit`` ended without an outcome (cancelled by its caller):
        it counts neither way, and frees its trial slot."""
        with self._lock:
            if permit.trial and permit.generation == self._generation:
                self._trials -= 1

    def _current(self, now: float) -> BreakerState:
        if self._state is BreakerState.OPEN and now - self._opened_at >= self.open_for:
            self._move(BreakerState.HALF_OPEN, now)
        return self._state

    def _move(self, state: BreakerState, now: float) -> None:
        if state is self._state:
            return
        log.log(
            logging.WARNING if state is BreakerState.OPEN else logging.INFO,
            "circuit breaker of %s: %s -> %s",
            self.name or "a peer",
            self._state.name.lower(),
            state.name.lower(),
        )
        self._state = state
        self._generation += 1
        self._trials = 0
        if state is BreakerState.OPEN:
            self._opened_at = now
        if state is BreakerState.CLOSED:  # a fresh window
            buckets = len(self._slots)
            self._slots, self._calls, self._failures = [-1] * buckets, [0] * buckets, [0] * buckets

    def _count(self, now: float, failed: bool) -> None:
        slot = int(now // self._width)
        i = slot % len(self._slots)
        if self._slots[i] != slot:
            self._slots[i], self._calls[i], self._failures[i] = slot, 0, 0
        self._calls[i] += 1
        self._failures[i] += failed

    def _totals(self, now: float) -> tuple[int, int]:
        """Calls and failures in the window ending now."""
        slot = int(now // self._width)
        live = [i for i, s in enumerate(self._slots) if 0 <= slot - s < len(self._slots)]
        return sum(self._calls[i] for i in live), sum(self._failures[i] for i in live)
