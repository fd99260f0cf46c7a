"""The index linker when links keep failing: it backs off instead of retrying every
second, reports itself failing after ``max_attempts`` in a row, and every wait on it has
a deadline or fails at once; the nodes stay searchable, stats never wait on it, and
nothing acknowledged is lost. Then through the engine and its readiness."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg import HnswIndex
from llmkg._core import Linker
from llmkg.engine import AllocationEngine, EngineConfig, LinkerError, LinkerTimeoutError
from llmkg.engine import engine as engine_module

DIM = 16


class Breaker:
    """A ``before_link`` hook that fails every link while ``broken`` is set; counts them."""

    def __init__(self) -> None:
        self.broken = threading.Event()
        self.broken.set()
        self.calls = 0

    def __call__(self, ids: list[int]) -> None:
        self.calls += 1
        if self.broken.is_set():
            raise OSError("link refused")


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def vector(i: int) -> np.ndarray:
    return np.full(4, i, dtype=np.float32)


def test_a_link_that_keeps_failing_reports_failing_and_waits_fail_at_once() -> None:
    breaker = Breaker()
    linker = Linker(
        HnswIndex(4),
        max_attempts=3,
        retry_delay=0.001,
        max_retry_delay=0.002,
        timeout=30,
        before_link=breaker,
    )
    linker.add(1, vector(1), "q8")
    eventually(lambda: linker.failing)
    ok, detail = linker.health()
    assert not ok and "link refused" in detail and "1 pending" in detail
    assert linker.pending() == [1], "the node stays pending: searches still score it"
    assert linker.search(vector(1), k=1)[0][0] == 1
    # Failing: no wait holds its caller for the whole deadline (30 s here).
    with pytest.raises(LinkerError, match="failing") as err:
        linker.wait_idle()
    assert not isinstance(err.value, LinkerTimeoutError)
    with pytest.raises(LinkerError, match="failing"):
        linker.wait_for(1)
    linker.wait_room()  # room left: allocations go on, their nodes found exactly
    linker.discard(1)  # a delete drops a node that is only queued
    assert linker.pending() == []
    linker.add(2, vector(2), "q8")
    breaker.broken.clear()
    eventually(lambda: linker.health()[0])
    linker.wait_idle()
    assert linker.inserted == 1 and linker.failed_links >= 3
    linker.close()


def test_adds_do_not_cut_a_retry_delay_short() -> None:
    breaker = Breaker()
    linker = Linker(HnswIndex(4), retry_delay=3600, before_link=breaker)
    linker.add(1, vector(1), "q8")
    eventually(lambda: linker.failed_links == 1)
    for i in range(2, 6):
        linker.add(i, vector(i), "q8")
    with pytest.raises(LinkerTimeoutError, match="within"):
        linker.wait_idle(timeout=0.05)
    assert breaker.calls == 1, "a new node must not bring the retry forward"
    # Close ends the delay: one last attempt, then the thread stops (the store keeps the
    # nodes; the next start replays them).
    closing = threading.Thread(target=linker.close)
    closing.start()
    closing.join(30)
    assert not closing.is_alive() and breaker.calls == 2 and len(linker) == 5


def test_waits_on_a_slow_linker_have_deadlines() -> None:
    release = threading.Event()
    entered = threading.Event()

    def stuck(ids: list[int]) -> None:
        entered.set()
        if not release.wait(30):
            raise TimeoutError("never released")

    linker = Linker(HnswIndex(4), timeout=0.05, before_link=stuck)
    linker.add(1, vector(1), "q8")
    assert entered.wait(30)
    with pytest.raises(LinkerTimeoutError):
        linker.wait_idle()
    with pytest.raises(LinkerTimeoutError):
        linker.wait_for(1)
    with pytest.raises(LinkerTimeoutError):
        linker.discard(1)  # its link is under way: a delete must wait for it
    release.set()
    linker.wait_idle(timeout=30)
    linker.close()


def fact(i: int) -> dict[str, Any]:
    v = np.random.default_rng(i).normal(size=DIM).astype(np.float32)
    e = v / np.linalg.norm(v)
    return {"subject": f"s{i}", "predicate": "p", "object": f"o{i}", "confidence": 0.5,
            "embedding": e.tolist()}  # fmt: skip


def test_an_engine_whose_links_fail_keeps_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = EngineConfig(
        data_directory=tmp_path / "data", dim=DIM, checkpoint_interval=0, link_attempts=2
    )
    breaker = Breaker()
    failing = functools.partial(
        Linker, retry_delay=0.001, max_retry_delay=0.001, before_link=breaker
    )
    monkeypatch.setattr(engine_module, "Linker", failing)
    engine = AllocationEngine(config)
    try:
        ids = [engine.allocate(fact(i)).node_id for i in range(5)]
        eventually(lambda: engine.linker.failing)
        hit = engine.search(embedding=fact(3)["embedding"], k=1)[0]
        assert hit.node_id == ids[3], "pending nodes are found"
        stats = engine.stats()  # answers, without waiting on the linker
        assert stats["inserts"]["failing"] and stats["inserts"]["pending"] == 5
        with pytest.raises(LinkerError):
            engine.checkpoint()
        assert engine.delete(ids[0]) and engine.get(ids[0]) is None
    finally:
        engine.close()  # does not hang; no snapshot can hold the pending nodes
    monkeypatch.undo()
    with AllocationEngine(config) as reopened:  # replayed from the store: nothing lost
        assert reopened.get(ids[0]) is None
        for i in range(1, 5):
            assert reopened.search(embedding=fact(i)["embedding"], k=1)[0].node_id == ids[i]
