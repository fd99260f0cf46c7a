"""BatchedInserts: concurrent single-node inserts coalesce into one index add, every
caller returns only once its node is in, and an error reaches every caller."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from llmkg.engine.inserts import BatchedInserts


class SlowIndex:
    """Records each add; the first one blocks until released."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.fail = fail

    def add(self, ids: np.ndarray, vectors: np.ndarray, precision: list[str]) -> None:
        self.calls.append(ids.tolist())
        assert vectors.shape == (len(ids), 4) and len(precision) == len(ids)
        if len(self.calls) == 1:
            self.entered.set()
            self.release.wait(30)
        if self.fail:
            raise ValueError("boom")


def run_concurrently(inserts: BatchedInserts, index: SlowIndex, n: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def insert(i: int) -> None:
        try:
            inserts.add(i, np.full(4, i, dtype=np.float32), "q8")
        except BaseException as e:
            errors.append(e)

    first = threading.Thread(target=insert, args=(0,))
    first.start()
    assert index.entered.wait(30)  # the leader is inside add
    others = [threading.Thread(target=insert, args=(i,)) for i in range(1, n)]
    for t in others:
        t.start()
    # Wait until every other caller is queued, then let the leader go.
    while len(inserts._queue) < n - 1:
        threading.Event().wait(0.01)
    index.release.set()
    for t in [first, *others]:
        t.join(30)
    return errors


def test_waiting_inserts_go_in_as_one_batch() -> None:
    index = SlowIndex()
    inserts = BatchedInserts(index)  # type: ignore[arg-type]
    assert run_concurrently(inserts, index, 6) == []
    assert index.calls[0] == [0]
    assert sorted(index.calls[1]) == [1, 2, 3, 4, 5] and len(index.calls) == 2
    assert (inserts.batches, inserts.inserted) == (2, 6)


def test_an_error_reaches_every_caller_of_the_batch() -> None:
    index = SlowIndex(fail=True)
    inserts = BatchedInserts(index)  # type: ignore[arg-type]
    errors = run_concurrently(inserts, index, 4)
    assert len(errors) == 4 and all(isinstance(e, ValueError) for e in errors)
    with pytest.raises(ValueError):  # and the next insert still leads a batch of its own
        inserts.add(9, np.zeros(4, dtype=np.float32), "q8")


class GatedIndex:
    """Each add waits until the test opens its gate."""

    def __init__(self, adds: int) -> None:
        self.calls: list[list[int]] = []
        self.gates = [threading.Event() for _ in range(adds)]
        self.entered = [threading.Event() for _ in range(adds)]

    def add(self, ids: np.ndarray, vectors: np.ndarray, precision: list[str]) -> None:
        n = len(self.calls)
        self.calls.append(ids.tolist())
        self.entered[n].set()
        assert self.gates[n].wait(30)


def test_a_leader_inserts_its_own_batch_and_hands_on_the_lead() -> None:
    # Under a steady stream the first caller must not insert everyone else's nodes: it
    # returns after its own batch, while the next batch (led by a caller of its own) is
    # still going in.
    index = GatedIndex(2)
    inserts = BatchedInserts(index)  # type: ignore[arg-type]

    def insert(i: int) -> None:
        inserts.add(i, np.full(4, i, dtype=np.float32), "q8")

    first = threading.Thread(target=insert, args=(0,))
    first.start()
    assert index.entered[0].wait(30)
    others = [threading.Thread(target=insert, args=(i,)) for i in (1, 2)]
    for t in others:
        t.start()
    while len(inserts._queue) < 2:
        threading.Event().wait(0.01)
    index.gates[0].set()
    assert index.entered[1].wait(30)  # the second batch is going in...
    first.join(30)
    assert not first.is_alive(), "the first leader went on to insert the next batch"
    assert all(t.is_alive() for t in others)  # ...and its callers wait for it
    index.gates[1].set()
    for t in others:
        t.join(30)
    assert index.calls == [[0], [1, 2]] or index.calls == [[0], [2, 1]]
    assert (inserts.batches, inserts.inserted) == (2, 3)
