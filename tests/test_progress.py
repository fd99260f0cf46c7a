"""Long jobs say how far they are: a log line at most every few seconds with the count and
the rate, and one at the end (start-up replays and rebuilds among them)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest

from llmkg._core import HnswIndex
from llmkg.engine import EngineConfig
from llmkg.engine.quantization import AdaptivePrecision
from llmkg.engine.snapshots import replay
from llmkg.progress import Progress, amount
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


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_known_total_and_a_unit_are_in_the_lines(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(log, "importing", every=5.0, clock=Ticks(5.0), total=40, unit="facts")
    with caplog.at_level(logging.INFO, logger="llmkg.test"):
        progress.advance(10)
        progress.advance(30)
        progress.done()
    assert [r.getMessage() for r in caplog.records] == [
        # Read at 5 (start), 10 and 15 by the advances, 20 at the end.
        "importing: 10 of 40 facts (25%) so far (2 facts/s)",
        "importing: 40 of 40 facts (100%) so far (4 facts/s)",
        "importing: 40 facts in 15.0s (3 facts/s)",
    ]


def test_bytes_are_shown_in_binary_units() -> None:
    assert amount(512, "bytes") == "512 bytes"
    assert amount(3 * 2**20 + 2**19, "bytes") == "3.5 MiB"
    assert amount(5 * 2**40, "bytes") == "5120.0 GiB"
    assert amount(7, "") == "7"


def test_on_a_terminal_a_bar_is_redrawn_in_place_and_nothing_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    screen = Terminal()
    progress = Progress(log, "exporting", clock=Ticks(1.0), total=100, unit="facts", stream=screen)
    with caplog.at_level(logging.INFO, logger="llmkg.test"):
        progress.advance(50)
        progress.advance(50)
        progress.done()
    assert not caplog.records
    frames = screen.getvalue().split("\r")[1:]
    assert frames[0].startswith("[" + "#" * 15 + "." * 15 + "] exporting: 50 of 100 facts (50%)")
    assert frames[-1].startswith("[" + "#" * 30 + "] exporting: 100 of 100 facts (100%)")
    assert screen.getvalue().endswith("\n")


def test_a_stream_that_is_not_a_terminal_gets_nothing(caplog: pytest.LogCaptureFixture) -> None:
    piped = io.StringIO()
    progress = Progress(log, "copying", every=1.0, clock=Ticks(1.0), stream=piped)
    with caplog.at_level(logging.INFO, logger="llmkg.test"):
        progress.advance(3)
        progress.done()
    assert piped.getvalue() == ""
    assert caplog.records[0].getMessage() == "copying: 3 so far (3/s)"
