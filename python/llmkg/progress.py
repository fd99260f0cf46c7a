"""Progress of long jobs (start-up replays and rebuilds, copies): a log line at most every
few seconds with the count so far and the rate, and one at the end. Log lines rather than
a terminal bar: these jobs run in servers and pods, whose output is a log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Progress:
    """``advance(n)`` as the job goes; ``done()`` at its end. ``clock`` (monotonic
    seconds) is injectable for tests."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log, self.what, self.every, self.clock = log, what, every, clock
        self.count = 0
        self.started = self._last = clock()

    def advance(self, n: int = 1) -> None:
        self.count += n
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self.log.info("%s: %d so far (%.0f/s)", self.what, self.count, self._rate(now))

    def done(self) -> None:
        now = self.clock()
        if now - self.started >= self.every:  # a quick job needs no line of its own
            self.log.info(
                "%s: %d in %.1fs (%.0f/s)",
                self.what,
                self.count,
                now - self.started,
                self._rate(now),
            )

    def _rate(self, now: float) -> float:
        return self.count / max(now - self.started, 1e-9)
