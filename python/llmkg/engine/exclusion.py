"""The engine's two exclusions: one engine per data directory (across processes), and the
write path that a checkpoint drains for an instant (across threads)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class DataDirectoryInUseError(RuntimeError):
    """Another engine (in this or another process) has the data directory open."""


def lock_directory(directory: Path) -> int:
    """An exclusive lock on ``directory`` held until the descriptor closes (the kernel drops
    it when the process dies, so a killed server never leaves a stale lock)."""
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirectoryInUseError(
            f"{directory} is in use by another llmkg engine (is a server running on it?)"
        ) from None
    return fd


class EngineClosedError(RuntimeError):
    """The engine is closing or closed; no more writes are accepted."""


class WriteGate:
    """Any number of writes pass at once; ``drained`` waits until none is under way and
    holds new ones back while it reads what they would change; ``close`` waits for the
    writes under way and refuses every later one."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inflight = 0
        self._draining = False
        self._closed = False

    @contextlib.contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            while self._draining:
                self._cond.wait()
            if self._closed:
                raise EngineClosedError("the engine is closed")
            self._inflight += 1
        try:
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                if self._inflight == 0:
                    self._cond.notify_all()

    def drained(self, read: Callable[[], T]) -> T:
        """``read()`` with no write under way and none let in until it returns."""
        with self._cond:
            self._draining = True
            try:
                while self._inflight:
                    self._cond.wait()
                return read()
            finally:
                self._draining = False
                self._cond.notify_all()

    def close(self) -> None:
        """Refuse new writes, then wait until those under way have finished."""
        with self._cond:
            self._closed = True
            while self._inflight:
                self._cond.wait()
