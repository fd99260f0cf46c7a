"""The core's index linker through Python: a queued node is pending, and found by
``Linker.search``, until the index has it; nodes queued during a link go in as one batch;
a failed link is retried with its nodes still pending; ``wait_room`` holds writers back
beyond ``max_pending``. Through the engine: a node is found, read and placed beside from
the moment its allocation returns, while its link is held back; checkpoints and deletes
wait for it. (The linker's own unit tests are in rust/core/src/linker.)"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg import HnswIndex
from llmkg._core import Linker
from llmkg.engine import AllocationEngine, EngineConfig, LinkerTimeoutError
from llmkg.engine import engine as engine_module


class Gate:
    """A ``before_link`` hook: records each batch, holds it until ``opened`` is set, and
    fails the first ``failures`` links."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[list[int]] = []
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.failures = failures

    def __call__(self, ids: list[int]) -> None:
        self.entered.set()
        if not self.opened.wait(30):
            raise TimeoutError("the test never opened the gate")
        self.calls.append(ids)
        if self.failures:
            self.failures -= 1
            raise ValueError("boom")


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.001)


def vector(i: int) -> np.ndarray:
    return np.array([1.0, i, 0.5, -i], dtype=np.float32)


def test_a_node_is_pending_and_found_until_the_index_has_it() -> None:
    gate = Gate()
    index = HnswIndex(4)
    linker = Linker(index, before_link=gate)
    linker.add(7, vector(7), "q8")
    assert gate.entered.wait(30)  # the link has started and is held at the gate
    assert linker.pending() == [7] and 7 in linker and len(linker) == 1
    assert linker.precision_of(7) == "q8" and 7 not in index
    ids, scores = linker.search(vector(7), k=2)
    assert ids[0] == 7 and scores[0] == pytest.approx(1.0, abs=1e-6), "scored exactly"
    gate.opened.set()
    linker.wait_for(7)
    assert gate.calls == [[7]] and 7 in index
    assert linker.pending() == [] and 7 not in linker and linker.precision_of(7) is None
    assert linker.search(vector(7), k=1)[0][0] == 7
    linker.close()


def test_nodes_queued_during_a_link_go_in_as_one_batch() -> None:
    gate = Gate()
    linker = Linker(HnswIndex(4), before_link=gate)
    linker.add(0, vector(0), "full")
    assert gate.entered.wait(30)
    for i in range(1, 6):
        linker.add(i, vector(i), "q8")
    assert linker.pending() == [0, 1, 2, 3, 4, 5]
    gate.opened.set()
    linker.wait_idle()
    assert gate.calls == [[0], [1, 2, 3, 4, 5]]
    assert (linker.batches, linker.inserted) == (2, 6)
    linker.close()


def test_a_failed_link_keeps_its_nodes_pending_and_is_retried() -> None:
    gate = Gate(failures=2)
    linker = Linker(HnswIndex(4), retry_delay=0.001, before_link=gate)
    linker.add(1, vector(1), "q8")
    linker.add(2, vector(2), "q8")
    gate.opened.set()
    linker.wait_idle()
    # Two failures, then the same nodes again: nothing was dropped on the way.
    assert len(gate.calls) == 3 and gate.calls[-1] == [1, 2]
    assert linker.inserted == 2 and linker.pending() == [] and linker.failed_links == 2
    assert "boom" in (linker.last_error or "")
    linker.close()


def test_allocations_wait_once_max_pending_nodes_wait() -> None:
    gate = Gate()
    linker = Linker(HnswIndex(4), max_pending=2, before_link=gate)
    linker.add(1, vector(1), "q8")
    linker.add(2, vector(2), "q8")
    with pytest.raises(LinkerTimeoutError, match="make room"):
        linker.wait_room(timeout=0.05)

    def third() -> None:
        linker.wait_room()
        linker.add(3, vector(3), "q8")

    waiting = threading.Thread(target=third)
    waiting.start()
    eventually(lambda: linker.waiting == 1)  # a third node waits for the linker
    assert len(linker) == 2
    gate.opened.set()
    waiting.join(30)
    assert not waiting.is_alive()
    linker.wait_idle()
    assert sorted(i for call in gate.calls for i in call) == [1, 2, 3]
    linker.close()


def test_close_links_what_is_queued_and_refuses_more() -> None:
    index = HnswIndex(4)
    linker = Linker(index)
    for i in range(3):
        linker.add(i, vector(i), "q8")
    linker.close()
    assert len(index) == 3
    with pytest.raises(ValueError, match="closed"):
        linker.add(9, vector(9), "q8")


def test_bad_arguments_are_refused() -> None:
    linker = Linker(HnswIndex(4))
    with pytest.raises(ValueError, match="4"):
        linker.add(1, np.ones(3, dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        linker.add(1, np.array([1, np.nan, 0, 0], dtype=np.float32))
    with pytest.raises(ValueError, match="precision"):
        linker.add(1, vector(1), "q3")
    with pytest.raises(ValueError, match="timeout"):
        linker.wait_idle(timeout=-1)
    assert len(linker) == 0
    linker.close()


# ---- through the engine: read-your-writes while the linker is held ---------------------

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def fact(i: int, embedding: np.ndarray, confidence: float = 0.5) -> dict[str, Any]:
    return {
        "subject": f"s{i}",
        "predicate": "p",
        "object": f"o{i}",
        "confidence": confidence,
        "embedding": embedding.tolist(),
    }


@contextlib.contextmanager
def held_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct_threshold: int = 50
) -> Iterator[tuple[AllocationEngine, Gate]]:
    """An engine whose links wait for the gate, opened at the end however the test went
    (closing waits for the links)."""
    gate = Gate()
    monkeypatch.setattr(engine_module, "Linker", functools.partial(Linker, before_link=gate))
    config = EngineConfig(
        data_directory=tmp_path / "data",
        dim=DIM,
        direct_threshold=direct_threshold,
        checkpoint_interval=0,
    )
    with AllocationEngine(config) as engine:
        try:
            yield engine, gate
        finally:
            gate.opened.set()


@pytest.mark.parametrize("direct_threshold", [0, 1000], ids=["hierarchical", "direct"])
def test_a_node_is_found_from_the_moment_its_allocation_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, direct_threshold: int
) -> None:
    with held_engine(tmp_path, monkeypatch, direct_threshold) as (engine, gate):
        gate.opened.set()
        for i in range(30):
            engine.allocate(fact(i, unit(i)))
        engine.sync_index()
        gate.opened.clear()

        new = engine.allocate(fact(99, unit(99), confidence=0.95))
        assert new.node_id in engine.linker and new.node_id not in engine.index
        best = engine.search(embedding=unit(99), k=3)[0]
        assert best.node_id == new.node_id and best.score == pytest.approx(1.0, abs=1e-5)
        only = engine.search(embedding=unit(99), k=1, filter={"subject": "s99"})
        assert [h.node_id for h in only] == [new.node_id]
        other = engine.search(embedding=unit(99), k=1, filter={"subject": "s1"})
        assert [h.node.subject for h in other] == ["s1"]
        got = engine.get(new.node_id)
        assert got is not None and got.subject == "s99"
        again = engine.allocate(fact(99, unit(99), confidence=0.95))
        assert not again.created and again.precision == new.precision == "full"
        near = unit(99) + 0.05 * unit(100)
        beside = engine.allocate(fact(100, near / np.linalg.norm(near)))
        assert beside.neighbors[0].node_id == new.node_id
        gate.opened.set()
        assert engine.stats()["nodes"] == 32
        engine.sync_index()
        assert new.node_id in engine.index and new.node_id not in engine.linker


def test_checkpoints_and_deletes_wait_for_a_pending_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with held_engine(tmp_path, monkeypatch) as (engine, gate):
        node = engine.allocate(fact(1, unit(1))).node_id
        checkpoint = threading.Thread(target=engine.checkpoint)
        checkpoint.start()
        # A snapshot must hold every committed node: it waits for the link.
        eventually(lambda: engine.linker.waiting == 1 or not checkpoint.is_alive())
        assert checkpoint.is_alive() and node not in engine.index
        gate.opened.set()
        checkpoint.join(30)
        assert not checkpoint.is_alive()
        assert node in engine.index

        gate.opened.clear()
        gate.entered.clear()
        gone = engine.allocate(fact(2, unit(2))).node_id
        assert gate.entered.wait(30)  # its link is under way: the delete must wait for it
        delete = threading.Thread(target=engine.delete, args=(gone,))
        delete.start()
        # A delete waits for the link, or the link would undo it.
        eventually(lambda: engine.linker.waiting == 1 or not delete.is_alive())
        assert delete.is_alive() and gone in engine.linker
        gate.opened.set()
        delete.join(30)
        assert not delete.is_alive()
        assert gone not in engine.index and engine.get(gone) is None
        assert [h.node_id for h in engine.search(embedding=unit(2), k=2)] == [node]

    with AllocationEngine(engine.config) as reopened:
        assert node in reopened.index and gone not in reopened.index
        assert reopened.search(embedding=unit(1), k=1)[0].node_id == node
