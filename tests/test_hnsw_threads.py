"""HnswIndex from several Python threads: the GIL is released, and concurrent adds and
searches are safe."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from conftest import clustered

import llmkg

DIM = 64


# Longer than any call below takes: the interpreter then never takes the GIL from a
# thread that holds it, which keeps it until it blocks or detaches from the interpreter.
SWITCH_INTERVAL = 10.0


def ran_during(call: Callable[[], object], attempts: int = 10) -> bool:
    """Whether this thread ran Python code while ``call`` was running in another thread.

    The other thread sets ``entered`` and makes the call; this thread waits for
    ``entered``. With the interpreter no longer forcing switches, nothing but the call
    itself can hand the GIL to this thread before the other one returns: a call that
    holds the GIL gives False, always. A call that releases it gives True unless the
    caller took the GIL back before the system woke this thread, which a call of some
    milliseconds makes rare and a few attempts negligible. No time is measured.
    """
    return any(_ran_during_once(call) for _ in range(attempts))


def _ran_during_once(call: Callable[[], object]) -> bool:
    entered = threading.Event()
    returned = False

    def run() -> None:
        nonlocal returned
        entered.set()
        call()
        returned = True

    thread = threading.Thread(target=run)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        thread.start()
        assert entered.wait(60)
        during = not returned
    finally:
        sys.setswitchinterval(interval)
        thread.join()
    return during


def test_the_probe_sees_a_call_that_holds_the_gil() -> None:
    assert not ran_during(lambda: sum(range(3_000_000)))


# The probes pass inputs of the types the bindings take as they are (uint64 ids, float32
# C-contiguous rows): a conversion by numpy may release the GIL itself (a large cast
# does), which would let the probe see a release that the core work did not make.


def test_searches_release_the_gil() -> None:
    vectors = clustered(5000, DIM, seed=1)
    index = llmkg.HnswIndex(DIM)
    index.add(np.arange(5000), vectors)
    queries = clustered(2000, DIM, seed=2)
    assert queries.dtype == np.float32 and queries.flags.c_contiguous
    assert ran_during(lambda: index.search(queries, k=10, ef=400))


def test_adds_release_the_gil() -> None:
    vectors = clustered(5000, DIM, seed=3)
    index = llmkg.HnswIndex(DIM)
    ids = np.arange(5000, dtype=np.uint64)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    assert ran_during(lambda: index.add(ids, vectors, threads=1))
    assert len(index) == 5000


def test_snapshot_writes_release_the_gil(tmp_path: Path) -> None:
    vectors = clustered(5000, DIM, seed=5)
    index = llmkg.HnswIndex(DIM)
    index.add(np.arange(5000, dtype=np.uint64), vectors)
    assert ran_during(lambda: index.write_file(tmp_path / "index.llmkg.zst", 9))


def test_concurrent_adds_removes_and_searches() -> None:
    index = llmkg.HnswIndex(DIM)
    data = clustered(8000, DIM, seed=4)
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for chunk in range(10):
                start = t * 2000 + chunk * 200
                ids = np.arange(start, start + 200)
                index.add(ids, data[start : start + 200])
                index.remove(ids[:20])
        except BaseException as e:
            errors.append(e)

    def reader(t: int) -> None:
        try:
            for i in range(300):
                ids, _ = index.search(data[(i * 7 + t) % 8000], k=5)
                assert len(ids) == 5
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    threads += [threading.Thread(target=reader, args=(t,)) for t in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    assert len(index) == 8000 - 4 * 10 * 20
    ids, _ = index.search(data[:100], k=1)
    live = set(
        np.setdiff1d(
            np.arange(8000),
            [c * 200 + t * 2000 + j for t in range(4) for c in range(10) for j in range(20)],
        ).tolist()
    )
    assert set(ids.ravel().tolist()) <= live


def test_batch_add_uses_the_threads_it_is_given() -> None:
    vectors = clustered(3000, DIM, seed=5)
    for threads in (1, 2):
        index = llmkg.HnswIndex(DIM)
        index.add(np.arange(3000), vectors, threads=threads)
        ids, _ = index.search(vectors[:20], k=1)
        assert ids.ravel().tolist() == list(range(20))
