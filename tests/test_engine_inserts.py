"""BackgroundInserts: a queued node is pending until the index has it, nodes queued during
a link go in as one batch, a failed link is retried with its nodes still pending, and
``wait_for``/``wait_idle``/``close`` wait for the linker. Through the engine: a node is
found, read and placed beside from the moment its allocation returns, while its link is
held back; checkpoints and deletes wait for it."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest

from llmkg import HnswIndex
from llmkg.engine import AllocationEngine, EngineConfig
from llmkg.engine import inserts as inserts_module
from llmkg.engine.inserts import BackgroundInserts, LinkerTimeoutError


class GatedIndex:
    """Records each add; every add waits for ``gate``; the first ``failures`` raise."""

    def __init__(self, failures: int = 0) -> None:
        self.calls: list[list[int]] = []
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.failures = failures

    def add(
        self, ids: np.ndarray, vectors: np.ndarray, precision: list[str], background: bool
    ) -> None:
        assert vectors.shape == (len(ids), 4) and len(precision) == len(ids) and background
        self.entered.set()
        assert self.gate.wait(30)
        self.calls.append(ids.tolist())
        if self.failures:
            self.failures -= 1
            raise ValueError("boom")


def _stack(frame: FrameType | None) -> list[FrameType]:
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


def blocked_in(thread: threading.Thread, method: Callable[..., Any], timeout: float = 30) -> bool:
    """Whether ``thread`` comes to wait on a ``threading.Condition`` from within ``method``
    (a condition it waits on because its predicate was false). Polled until ``timeout``;
    False as soon as the thread has ended, which it would if it did not wait."""
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        frames = _stack(sys._current_frames().get(thread.ident or -1))
        if (
            frames
            and frames[0].f_code is threading.Condition.wait.__code__
            and any(f.f_code is method.__code__ for f in frames)
        ):
            return True
        time.sleep(0.001)
    return False


def vector(i: int) -> np.ndarray:
    return np.full(4, i, dtype=np.float32)


@pytest.fixture
def index() -> GatedIndex:
    return GatedIndex()


def test_a_node_is_pending_until_the_index_has_it(index: GatedIndex) -> None:
    inserts = BackgroundInserts(index)  # type: ignore[arg-type]
    inserts.add(7, vector(7), "q8")
    assert index.entered.wait(30)  # the link has started and is held at the gate
    ids, vectors = inserts.pending()
    assert ids == [7] and np.array_equal(vectors[0], vector(7))
    assert 7 in inserts and len(inserts) == 1 and inserts.precision_of(7) == "q8"
    index.gate.set()
    inserts.wait_for(7)
    assert index.calls == [[7]]
    assert inserts.pending() == ([], []) and 7 not in inserts and inserts.precision_of(7) is None
    inserts.close()


def test_nodes_queued_during_a_link_go_in_as_one_batch(index: GatedIndex) -> None:
    inserts = BackgroundInserts(index)  # type: ignore[arg-type]
    inserts.add(0, vector(0), "full")
    assert index.entered.wait(30)
    for i in range(1, 6):
        inserts.add(i, vector(i), "q8")
    assert inserts.pending()[0] == [0, 1, 2, 3, 4, 5]
    index.gate.set()
    inserts.wait_idle()
    assert index.calls == [[0], [1, 2, 3, 4, 5]]
    assert (inserts.batches, inserts.inserted) == (2, 6)
    inserts.close()


def test_a_failed_link_keeps_its_nodes_pending_and_is_retried() -> None:
    index = GatedIndex(failures=2)
    inserts = BackgroundInserts(index, retry_delay=0.001)  # type: ignore[arg-type]
    inserts.add(1, vector(1), "q8")
    inserts.add(2, vector(2), "q8")
    index.gate.set()
    inserts.wait_idle()
    # Two failures, then the same nodes again: nothing was dropped on the way.
    assert len(index.calls) == 3 and index.calls[-1] == [1, 2]
    assert inserts.inserted == 2 and inserts.pending() == ([], [])
    inserts.close()


def test_allocations_wait_once_max_pending_nodes_wait(
    index: GatedIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inserts_module, "MAX_PENDING", 2)
    inserts = BackgroundInserts(index)  # type: ignore[arg-type]
    inserts.add(1, vector(1), "q8")
    inserts.add(2, vector(2), "q8")
    with pytest.raises(LinkerTimeoutError, match="make room"):
        inserts.wait_room(timeout=0.05)

    def third() -> None:
        inserts.wait_room()
        inserts.add(3, vector(3), "q8")

    waiting = threading.Thread(target=third)
    waiting.start()
    assert blocked_in(waiting, BackgroundInserts.wait_room), "a third node waits for the linker"
    assert len(inserts) == 2
    index.gate.set()
    waiting.join(30)
    assert not waiting.is_alive()
    inserts.wait_idle()
    assert sorted(i for call in index.calls for i in call) == [1, 2, 3]
    inserts.close()


def test_close_links_what_is_queued_and_refuses_more(index: GatedIndex) -> None:
    inserts = BackgroundInserts(index)  # type: ignore[arg-type]
    for i in range(3):
        inserts.add(i, vector(i), "q8")
    index.gate.set()
    inserts.close()
    assert sorted(i for call in index.calls for i in call) == [0, 1, 2]
    with pytest.raises(RuntimeError, match="closed"):
        inserts.add(9, vector(9), "q8")


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


class HeldLinks:
    """Stands in for the engine's index in its linker: links wait for ``gate``."""

    def __init__(self, index: HnswIndex) -> None:
        self.index = index
        self.gate = threading.Event()
        self.entered = threading.Event()

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.entered.set()
        assert self.gate.wait(30)
        self.index.add(*args, **kwargs)


@contextlib.contextmanager
def held_engine(
    tmp_path: Path, direct_threshold: int = 50
) -> Iterator[tuple[AllocationEngine, HeldLinks]]:
    """An engine whose links wait for ``held.gate``, opened at the end however the test
    went (closing waits for the links)."""
    config = EngineConfig(
        data_directory=tmp_path / "data",
        dim=DIM,
        direct_threshold=direct_threshold,
        checkpoint_interval=0,
    )
    with AllocationEngine(config) as engine:
        held = HeldLinks(engine.index)
        engine.inserts.index = held  # type: ignore[assignment]
        try:
            yield engine, held
        finally:
            held.gate.set()


@pytest.mark.parametrize("direct_threshold", [0, 1000], ids=["hierarchical", "direct"])
def test_a_node_is_found_from_the_moment_its_allocation_returns(
    tmp_path: Path, direct_threshold: int
) -> None:
    with held_engine(tmp_path, direct_threshold) as (engine, held):
        held.gate.set()
        for i in range(30):
            engine.allocate(fact(i, unit(i)))
        engine.sync_index()
        held.gate.clear()

        new = engine.allocate(fact(99, unit(99), confidence=0.95))
        assert new.node_id in engine.inserts and new.node_id not in engine.index
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
        held.gate.set()
        assert engine.stats()["nodes"] == 32
        engine.sync_index()
        assert new.node_id in engine.index and new.node_id not in engine.inserts


def test_checkpoints_and_deletes_wait_for_a_pending_node(tmp_path: Path) -> None:
    with held_engine(tmp_path) as (engine, held):
        node = engine.allocate(fact(1, unit(1))).node_id
        checkpoint = threading.Thread(target=engine.checkpoint)
        checkpoint.start()
        waits = blocked_in(checkpoint, BackgroundInserts.wait_idle)
        assert waits, "a snapshot must hold every committed node: it waits for the link"
        assert node not in engine.index
        held.gate.set()
        checkpoint.join(30)
        assert not checkpoint.is_alive()
        assert node in engine.index

        held.gate.clear()
        held.entered.clear()
        gone = engine.allocate(fact(2, unit(2))).node_id
        assert held.entered.wait(30)  # its link is under way: the delete must wait for it
        delete = threading.Thread(target=engine.delete, args=(gone,))
        delete.start()
        waits = blocked_in(delete, BackgroundInserts.discard)
        assert waits, "a delete waits for the link, or the link would undo it"
        assert gone in engine.inserts
        held.gate.set()
        delete.join(30)
        assert not delete.is_alive()
        assert gone not in engine.index and engine.get(gone) is None
        assert [h.node_id for h in engine.search(embedding=unit(2), k=2)] == [node]

    with AllocationEngine(engine.config) as reopened:
        assert node in reopened.index and gone not in reopened.index
        assert reopened.search(embedding=unit(1), k=1)[0].node_id == node
