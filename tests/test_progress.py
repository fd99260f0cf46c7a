"""Long jobs say how far they are: a log line at most every few seconds with the count and
the rate, and one at the end (start-up replays and rebuilds among them)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from llmkg._core import HnswIndex
from llmkg.engine import EngineConfig
from llmkg.engine.quantization import AdaptivePrecision
from llmkg.engine.snapshots import replay
from llmkg.progress import Progress
from llmkg.store import SqliteStore

log = logging.getLogger("llmkg.test")


class Ticks:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_line_at_most_every_interval_and_one_at_the_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    progress = Progress(log, "copying", every=5.0, clock=Ticks(1.0))
    with caplog.at_level(logging.INFO, logger="llmkg.test"):
        for _ in range(12):
            progress.advance(10)
        progress.done()
    lines = [r.getMessage() for r in caplog.records]
    # Read at 1 (start), then 2..13 by the advances: lines at 6 and 11; the end at 14.
    assert lines == [
        "copying: 50 so far (10/s)",
        "copying: 100 so far (10/s)",
        "copying: 120 in 13.0s (9/s)",
    ]


def test_a_quick_job_logs_nothing() -> None:
    progress = Progress(log, "copying", every=5.0, clock=Ticks(0.001))
    progress.advance(3)
    progress.done()
    assert progress.count == 3


def test_a_rebuild_reports_its_progress(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with SqliteStore(tmp_path) as store:
        for i in range(30):
            store.insert(f"s{i}", "p", "o", 0.5, np.full(4, i + 1, dtype=np.float32))
        index = HnswIndex(4)
        progress = Progress(
            logging.getLogger("llmkg.engine"), "rebuilding", every=5.0, clock=Ticks(1.0)
        )
        with caplog.at_level(logging.INFO, logger="llmkg.engine"):
            count = replay(index, store, AdaptivePrecision(EngineConfig(dim=4)), 0, progress)
    assert count == 30 and len(index) == 30
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rebuilding")]
    assert lines[0] == "rebuilding: 5 so far (1/s)" and lines[-1].startswith("rebuilding: 30 in ")
