"""How the engine's checkpoints fare, and when to try again after one failed.

A failed checkpoint (the disk full, an I/O error) loses nothing: the store is the truth,
and the next start replays whatever no snapshot holds. So it is retried, but with an
exponential back-off (1 s, 2 s, 4 s, ... up to ``MAX_BACKOFF``) rather than on every tick
of the background thread: each attempt serializes the whole index. After a failure for
want of space the next attempt first checks for room (as much as the newest snapshot
takes) and fails at once, without serializing, while there is none.
"""

from __future__ import annotations

import errno
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmkg.engine.snapshots import list_snapshots
from llmkg.store.failures import storage_failure

BASE_BACKOFF = 1.0
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class CheckpointStatus:
    failing: bool
    failures_total: int
    consecutive_failures: int
    last_success: float  # wall-clock seconds (the engine's start until a checkpoint succeeds)
    last_error: str | None
    retry_in: float  # seconds until the background thread may try again

    def describe(self) -> str:
        if not self.failing:
            return "ok"
        return (
            f"failing: {self.consecutive_failures} attempts in a row, last error: "
            f"{self.last_error}; next try in {self.retry_in:.0f}s"
        )


class CheckpointTracker:
    """Counts checkpoint outcomes and spaces the retries. ``clock`` (monotonic) and
    ``wall`` are injectable for tests."""

    def __init__(
        self,
        base: float = BASE_BACKOFF,
        cap: float = MAX_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.base, self.cap = base, cap
        self.clock, self.wall = clock, wall
        self._lock = threading.Lock()
        self.failures_total = 0
        self.consecutive = 0
        # The index was consistent with the store when the engine started (loaded, then
        # replayed): that counts as the last good state until a checkpoint succeeds.
        self.last_success = wall()
        self.last_error: str | None = None
        self._out_of_space = False
        self._retry_at = 0.0

    def may_retry(self) -> bool:
        """False while a failed checkpoint's back-off runs (the background thread waits)."""
        with self._lock:
            return self.clock() >= self._retry_at

    def check_room(self, directory: Path) -> None:
        """After a failure for want of space: raise ENOSPC, before the index is serialized
        again, while the folder has less room than the newest snapshot took."""
        with self._lock:
            if not self._out_of_space:
                return
        snapshots = list_snapshots(directory)
        needed = snapshots[0].path.stat().st_size if snapshots else 1
        existing = directory if directory.exists() else directory.parent
        free = shutil.disk_usage(existing).free
        if free < needed:
            raise OSError(
                errno.ENOSPC, f"no room for a snapshot: {free} bytes free, the last took {needed}"
            )

    def succeeded(self) -> None:
        with self._lock:
            self.consecutive = 0
            self.last_success = self.wall()
            self.last_error = None
            self._out_of_space = False
            self._retry_at = 0.0

    def failed(self, exc: BaseException) -> float:
        """Count a failure; returns the back-off before the next background attempt."""
        with self._lock:
            self.failures_total += 1
            self.consecutive += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._out_of_space = storage_failure(exc) == "full"
            delay: float = min(self.cap, self.base * 2 ** min(self.consecutive - 1, 30))
            self._retry_at = self.clock() + delay
            return delay

    def status(self) -> CheckpointStatus:
        with self._lock:
            return CheckpointStatus(
                failing=self.consecutive > 0,
                failures_total=self.failures_total,
                consecutive_failures=self.consecutive,
                last_success=self.last_success,
                last_error=self.last_error,
                retry_in=max(0.0, self._retry_at - self.clock()),
            )
