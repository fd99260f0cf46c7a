"""Progress of a benchmark's long set-up phases (a store filled with 100,000 facts, the
hit-ratio traces of two million accesses): llmkg's own reporter (``llmkg.progress``), a
bar on a terminal, else a line on stderr every few seconds with the count and the rate.
The comparisons' timed loops do not report: a report there would be part of the time."""

from __future__ import annotations

import logging
import sys

from llmkg.progress import Progress

log = logging.getLogger("llmkg.bench")
if not log.handlers:
    # pytest captures sys.stderr; the process's own stderr reaches the terminal (or the
    # CI log) whether or not the run was started with -s.
    _handler = logging.StreamHandler(sys.__stderr__)
    _handler.setFormatter(logging.Formatter("  %(message)s"))
    log.addHandler(_handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def progress(what: str, total: int | None = None, unit: str = "") -> Progress:
    """The reporter of one phase: ``advance(n)`` as it goes, ``done()`` at its end."""
    return Progress(log, what, total=total, unit=unit, stream=sys.__stderr__)
