"""The index linker when links keep failing: it backs off instead of retrying every
second, reports itself failing after ``max_attempts`` in a row, and every wait on it has
a deadline or fails at once; the nodes stay searchable, stats never wait on it, and
nothing acknowledged is lost. Then through the engine and its readiness."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg.engine import AllocationEngine, EngineConfig
from llmkg.engine.inserts import (
    BackgroundInserts,
    LinkerError,
    LinkerTimeoutError,
    retry_delay,
)

DIM = 16


class FailingIndex:
    """An index whose ``add`` raises while ``broken`` is set; counts the calls, and hands
    them to ``inner`` (an index) when it works."""

    def __init__(self, inner: Any = None) -> None:
        self.inner = inner
        self.broken = threading.Event()
        self.broken.set()
        self.calls = 0

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.calls += 1
        if self.broken.is_set():
            raise OSError("link refused")
        if self.inner is not None:
            self.inner.add(*args, **kwargs)


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def vector(i: int) -> np.ndarray:
    return np.full(4, i, dtype=np.float32)


def test_retry_delays_double_up_to_the_longest() -> None:
    assert [retry_delay(n, 1.0, 60.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_link_that_keeps_failing_reports_failing_and_waits_fail_at_once() -> None:
    index = FailingIndex()
    inserts = BackgroundInserts(
        index,  # type: ignore[arg-type]
        max_attempts=3,
        retry_delay=0.001,
        max_retry_delay=0.002,
        timeout=30,
    )
    inserts.add(1, vector(1), "q8")
    eventually(lambda: inserts.failing)
    ok, detail = inserts.health()
    assert not ok and "link refused" in detail and "1 pending" in detail
    assert inserts.pending()[0] == [1], "the node stays pending: searches still score it"
    # Failing: no wait holds its caller for the whole deadline (30 s here).
    with pytest.raises(LinkerError, match="failing") as err:
        inserts.wait_idle()
    assert not isinstance(err.value, LinkerTimeoutError)
    with pytest.raises(LinkerError, match="failing"):
        inserts.wait_for(1)
    inserts.wait_room()  # room left: allocations go on, their nodes found exactly
    inserts.discard(1)  # a delete drops a node that is only queued
    assert inserts.pending() == ([], [])
    inserts.add(2, vector(2), "q8")
    index.broken.clear()
    eventually(lambda: inserts.health()[0])
    inserts.wait_idle()
    assert inserts.inserted == 1 and inserts.failed_links >= 3
    inserts.close()


def test_adds_do_not_cut_a_retry_delay_short() -> None:
    index = FailingIndex()
    inserts = BackgroundInserts(index, retry_delay=3600)  # type: ignore[arg-type]
    inserts.add(1, vector(1), "q8")
    eventually(lambda: inserts.failed_links == 1)
    for i in range(2, 6):
        inserts.add(i, vector(i), "q8")
    with pytest.raises(LinkerTimeoutError, match="within"):
        inserts.wait_idle(timeout=0.05)
    assert index.calls == 1, "a new node must not bring the retry forward"
    # Close ends the delay: one last attempt, then the thread stops (the store keeps the
    # nodes; the next start replays them).
    closing = threading.Thread(target=inserts.close)
    closing.start()
    closing.join(30)
    assert not closing.is_alive() and index.calls == 2 and len(inserts) == 5


def test_waits_on_a_slow_linker_have_deadlines() -> None:
    class Stuck:
        def __init__(self) -> None:
            self.release = threading.Event()

        def add(self, *args: Any, **kwargs: Any) -> None:
            assert self.release.wait(30)

    index = Stuck()
    inserts = BackgroundInserts(index, timeout=0.05)  # type: ignore[arg-type]
    inserts.add(1, vector(1), "q8")
    with pytest.raises(LinkerTimeoutError):
        inserts.wait_idle()
    with pytest.raises(LinkerTimeoutError):
        inserts.wait_for(1)
    with pytest.raises(LinkerTimeoutError):
        inserts.discard(1)  # its link is under way: a delete must wait for it
    index.release.set()
    inserts.wait_idle(timeout=30)
    inserts.close()


def fact(i: int) -> dict[str, Any]:
    v = np.random.default_rng(i).normal(size=DIM).astype(np.float32)
    e = v / np.linalg.norm(v)
    return {"subject": f"s{i}", "predicate": "p", "object": f"o{i}", "confidence": 0.5,
            "embedding": e.tolist()}  # fmt: skip


def test_an_engine_whose_links_fail_keeps_serving(tmp_path: Path) -> None:
    config = EngineConfig(
        data_directory=tmp_path / "data", dim=DIM, checkpoint_interval=0, link_attempts=2
    )
    engine = AllocationEngine(config)
    links = FailingIndex(engine.index)
    engine.inserts.index = links  # type: ignore[assignment]
    engine.inserts.retry_delay = engine.inserts.max_retry_delay = 0.001
    try:
        ids = [engine.allocate(fact(i)).node_id for i in range(5)]
        eventually(lambda: engine.inserts.failing)
        hit = engine.search(embedding=fact(3)["embedding"], k=1)[0]
        assert hit.node_id == ids[3], "pending nodes are found"
        stats = engine.stats()  # answers, without waiting on the linker
        assert stats["inserts"]["failing"] and stats["inserts"]["pending"] == 5
        with pytest.raises(LinkerError):
            engine.checkpoint()
        assert engine.delete(ids[0]) and engine.get(ids[0]) is None
    finally:
        engine.close()  # does not hang; no snapshot can hold the pending nodes
    with AllocationEngine(config) as reopened:  # replayed from the store: nothing lost
        assert reopened.get(ids[0]) is None
        for i in range(1, 5):
            assert reopened.search(embedding=fact(i)["embedding"], k=1)[0].node_id == ids[i]
