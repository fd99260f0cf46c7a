"""Progress of long jobs (start-up replays and rebuilds, exports and imports, backups and
restores): on a terminal, a bar redrawn in place; otherwise a log line at most every few
seconds with the count so far and the rate, and one at the end. Log lines by default:
most of these jobs run in servers and pods, whose output is a log; a command run by hand
passes its terminal (``stream``) and gets the bar."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30
REDRAW_EVERY = 0.1  # seconds between redraws of the bar


def amount(n: float, unit: str) -> str:
    """``n`` of ``unit`` for a person: bytes in KiB, MiB, GiB; anything else as a count."""
    if unit != "bytes":
        return f"{n:.0f} {unit}" if unit else f"{n:.0f}"
    for suffix in ("bytes", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or suffix == "GiB":
            return f"{n:.0f} {suffix}" if suffix == "bytes" else f"{n:.1f} {suffix}"
        n /= 1024
    raise AssertionError("unreachable")


class Progress:
    """``advance(n)`` (or ``update(count)``) as the job goes; ``done()`` at its end.

    ``total``: how much there is, when known (a percentage and a bar then). ``unit``: what
    is counted (``"facts"``, ``"bytes"``; empty: a bare count). ``stream``: a terminal to
    draw the bar on (nothing is logged then); a stream that is not a terminal (a pipe, a
    file) is ignored, and the lines go to ``log``. ``clock`` (monotonic seconds) is
    injectable for tests."""

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        every: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        total: int | None = None,
        unit: str = "",
        stream: TextIO | None = None,
    ) -> None:
        self.log, self.what, self.every, self.clock = log, what, every, clock
        self.total, self.unit = total, unit
        self.bar = stream if stream is not None and stream.isatty() else None
        self.count = 0
        self.started = self._last = clock()
        self._drawn = False

    def advance(self, n: int = 1) -> None:
        self.update(self.count + n)

    def update(self, count: int) -> None:
        """The count so far (for jobs that are told where they are, not how far they went)."""
        self.count = count
        now = self.clock()
        if now - self._last < (REDRAW_EVERY if self.bar is not None else self.every):
            return
        self._last = now
        if self.bar is not None:
            self._draw(now)
        else:
            self.log.info("%s: %s so far (%s/s)", self.what, self._so_far(), self._rate(now))

    def done(self) -> None:
        now = self.clock()
        if self.bar is not None:
            if self._drawn or now - self.started >= REDRAW_EVERY:
                self._draw(now)
                self.bar.write("\n")
                self.bar.flush()
            return
        if now - self.started >= self.every:  # a quick job needs no line of its own
            self.log.info(
                "%s: %s in %.1fs (%s/s)",
                self.what,
                amount(self.count, self.unit),
                now - self.started,
                self._rate(now),
            )

    def _so_far(self) -> str:
        if not self.total:
            return amount(self.count, self.unit)
        percent = 100 * self.count / self.total
        done = amount(self.count, "bytes" if self.unit == "bytes" else "")
        return f"{done} of {amount(self.total, self.unit)} ({percent:.0f}%)"

    def _rate(self, now: float) -> str:
        return amount(self.count / max(now - self.started, 1e-9), self.unit)

    def _draw(self, now: float) -> None:
        assert self.bar is not None
        line = f"{self.what}: {self._so_far()}, {self._rate(now)}/s"
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.count // self.total)
            line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {line}"
        # \r and a clear to the end of the line: a shorter line leaves nothing behind.
        self.bar.write(f"\r{line}\x1b[K")
        self.bar.flush()
        self._drawn = True


# (what, total or None, unit) -> the reporter of one job: how a command says where its
# reports go (a terminal, a log) to the library code that runs the job.
ProgressFactory = Callable[[str, int | None, str], Progress]


def log_lines(log: logging.Logger) -> ProgressFactory:
    """Reporters that log a line every few seconds (the default of library code: a
    server's output is a log)."""

    def make(what: str, total: int | None, unit: str) -> Progress:
        return Progress(log, what, total=total, unit=unit)

    return make
