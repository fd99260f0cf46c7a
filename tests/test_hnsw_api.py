"""HnswIndex through the Python API on small synthetic data: shapes, upserts, removal,
precision changes, persistence, and bad input."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import clustered, exact_top

import llmkg

DIM = 16


@pytest.fixture
def small() -> tuple[llmkg.HnswIndex, np.ndarray]:
    vectors = clustered(1000, DIM, seed=1)
    index = llmkg.HnswIndex(DIM)
    index.add(np.arange(1000, dtype=np.uint64), vectors)
    return index, vectors


def test_search_shapes_and_order(small: tuple[llmkg.HnswIndex, np.ndarray]) -> None:
    index, vectors = small
    ids, scores = index.search(vectors[3], k=5)
    assert ids.shape == (5,) and ids.dtype == np.uint64
    assert scores.shape == (5,) and scores.dtype == np.float32
    assert ids[0] == 3 and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(scores) <= 0), "best first"
    ids, scores = index.search(vectors[:7], k=4)
    assert ids.shape == (7, 4) and scores.shape == (7, 4)
    assert list(ids[:, 0]) == list(range(7))


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_each_metric_finds_the_exact_neighbours(metric: str) -> None:
    vectors = clustered(800, DIM, seed=2)
    queries = clustered(20, DIM, seed=3)
    index = llmkg.HnswIndex(DIM, metric=metric)
    index.add(np.arange(800), vectors)
    ids, scores = index.search(queries, k=10, ef=400)
    truth = exact_top(vectors, queries, 10, metric)
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ids, truth, strict=False))
    assert hits / 200 >= 0.9
    if metric == "l2":
        want = -((queries[0] - vectors[ids[0, 0]]) ** 2).sum()
        assert scores[0, 0] == pytest.approx(want, rel=1e-4)


def test_fewer_matches_than_k_are_padded() -> None:
    index = llmkg.HnswIndex(4)
    index.add([5, 6], np.eye(4, dtype=np.float32)[:2])
    ids, scores = index.search(np.ones(4, dtype=np.float32), k=4)
    assert sorted(ids[:2].tolist()) == [5, 6]
    assert ids[2:].tolist() == [llmkg.MISSING_ID] * 2
    assert all(math.isinf(s) and s < 0 for s in scores[2:])
    empty = llmkg.HnswIndex(4)
    ids, _ = empty.search(np.ones(4), k=2)
    assert ids.tolist() == [llmkg.MISSING_ID] * 2


def test_upsert_membership_and_vectors() -> None:
    index = llmkg.HnswIndex(4, metric="ip")
    index.add([1, 2], [[1, 0, 0, 0], [0, 1, 0, 0]])
    index.add([1], [[0, 0, 1, 0]])
    assert len(index) == 2 and 1 in index and 3 not in index and "x" not in index
    assert index.get_vector(1).tolist() == [0, 0, 1, 0]
    with pytest.raises(KeyError):
        index.get_vector(3)
    # Within one call, the last row of an id wins.
    index.add([9, 9], [[1, 1, 0, 0], [0, 0, 0, 1]])
    assert index.get_vector(9).tolist() == [0, 0, 0, 1]
    assert len(index) == 3


def test_removed_ids_are_never_returned(small: tuple[llmkg.HnswIndex, np.ndarray]) -> None:
    index, vectors = small
    gone = np.arange(0, 1000, 4, dtype=np.uint64)
    assert index.remove(gone) == len(gone)
    assert index.remove(gone) == 0
    assert len(index) == 750 and 0 not in index
    ids, _ = index.search(vectors[:50], k=20)
    assert not set(ids.ravel().tolist()) & set(gone.tolist())
    index.compact()
    assert index.stats()["deleted"] == 0


def test_memory_stays_flat_under_churn() -> None:
    index = llmkg.HnswIndex(DIM)
    rng = np.random.default_rng(4)
    index.add(np.arange(2000), clustered(2000, DIM, seed=5))
    next_id = 2000
    sizes = []
    for _ in range(10):
        victims = rng.choice(list(range(next_id - 2000, next_id)), 400, replace=False)
        index.remove(victims)
        index.add(np.arange(next_id, next_id + 400), clustered(400, DIM, seed=next_id))
        index.add(victims, clustered(400, DIM, seed=next_id + 1))
        next_id += 400
        index.remove(np.arange(next_id - 2400, next_id - 2000))
        sizes.append(index.memory_bytes())
    assert len(index) == 2000
    assert max(sizes[3:]) <= sizes[2] * 1.1, sizes


def test_precision_per_node_and_conversion(small: tuple[llmkg.HnswIndex, np.ndarray]) -> None:
    index, vectors = small
    assert index.precision_of(0) == "full"
    index.set_precision([0, 1, 2], "binary")
    assert [index.precision_of(i) for i in range(3)] == ["binary"] * 3
    assert index.stats()["precisions"]["binary"] == 3
    ids, _ = index.search(vectors[1], k=1)
    assert ids[0] == 1, "rescoring with the kept full vector finds the node itself"
    with pytest.raises(KeyError):
        index.precision_of(12345)
    mixed = llmkg.HnswIndex(DIM, keep_full=False)
    mixed.add(np.arange(4), vectors[:4], precision=["full", "q8", "q4", "binary"])
    assert [mixed.precision_of(i) for i in range(4)] == ["full", "q8", "q4", "binary"]
    # A q8 code decodes close to the vector (normalized, for cosine).
    unit = vectors[1] / np.linalg.norm(vectors[1])
    assert np.abs(mixed.get_vector(1) - unit).max() < 0.01


def test_keep_full_false_saves_memory() -> None:
    vectors = clustered(2000, 128, seed=6)
    sizes = {}
    for precision in ["full", "q8", "q4", "binary"]:
        index = llmkg.HnswIndex(128, keep_full=False)
        index.add(np.arange(2000), vectors, precision=precision)
        sizes[precision] = index.memory_bytes()
    assert sizes["full"] > sizes["q8"] > sizes["q4"] > sizes["binary"], sizes


def test_save_and_load_answer_identically(
    small: tuple[llmkg.HnswIndex, np.ndarray], tmp_path
) -> None:
    index, vectors = small
    index.set_precision(np.arange(100), "q4")
    index.remove([7, 8])
    path = tmp_path / "index.llmkg"
    index.save(path)
    loaded = llmkg.HnswIndex.load(str(path))
    assert len(loaded) == len(index) and loaded.precision_of(5) == "q4"
    for a, b in zip(
        index.search(vectors[:30], k=10), loaded.search(vectors[:30], k=10), strict=False
    ):
        np.testing.assert_array_equal(a, b)
    assert llmkg.HnswIndex.from_bytes(index.to_bytes()).stats()["len"] == len(index)


def test_damaged_files_raise_a_clear_error(
    small: tuple[llmkg.HnswIndex, np.ndarray], tmp_path
) -> None:
    index, _ = small
    data = index.to_bytes()
    path = tmp_path / "bad.llmkg"
    for damaged in [data[: len(data) // 2], data[:-1], b"", b"not an index at all"]:
        path.write_bytes(damaged)
        with pytest.raises(llmkg.CorruptIndexError):
            llmkg.HnswIndex.load(path)
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x10
    path.write_bytes(bytes(flipped))
    with pytest.raises(llmkg.CorruptIndexError, match="checksum"):
        llmkg.HnswIndex.load(path)
    with pytest.raises(OSError):
        llmkg.HnswIndex.load(tmp_path / "missing.llmkg")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda i: i.add([1], np.zeros((1, 5))), ValueError, "dimension 5"),
        (lambda i: i.add([1, 2], np.zeros((1, DIM))), ValueError, "differ in length"),
        (lambda i: i.add([1], np.full((1, DIM), np.nan)), ValueError, "non-finite"),
        (lambda i: i.add([1], np.full((1, DIM), np.inf)), ValueError, "non-finite"),
        (lambda i: i.add([-1], np.zeros((1, DIM))), ValueError, "non-negative"),
        (lambda i: i.add([1.5], np.zeros((1, DIM))), TypeError, "integers"),
        (lambda i: i.add([1], np.zeros(DIM)), ValueError, "shape"),
        (lambda i: i.add([1], "vectors"), TypeError, "floats"),
        (lambda i: i.add([1], np.zeros((1, DIM)), precision="q2"), ValueError, "precision"),
        (
            lambda i: i.add([1], np.zeros((1, DIM)), precision=["q8", "q8"]),
            ValueError,
            "one per row",
        ),
        (lambda i: i.add([1], np.zeros((1, DIM)), threads=0), ValueError, "threads"),
        (lambda i: i.search(np.zeros(DIM), k=0), ValueError, "k must be"),
        (lambda i: i.search(np.zeros(DIM), ef=0), ValueError, "ef must be"),
        (lambda i: i.search(np.zeros(3)), ValueError, "dimension 3"),
        (lambda i: i.search(np.full(DIM, np.nan)), ValueError, "non-finite"),
        (lambda i: i.search(np.zeros((2, 2, 2))), ValueError, "shape"),
        (lambda i: i.set_precision([1], "fp16"), ValueError, "precision"),
        (lambda i: i.set_precision([424242], "q8"), ValueError, "not in the index"),
    ],
)
def test_bad_input_raises_a_named_error(call, error, message) -> None:
    index = llmkg.HnswIndex(DIM)
    index.add([1], np.ones((1, DIM), dtype=np.float32))
    with pytest.raises(error, match=message):
        call(index)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="metric"):
        llmkg.HnswIndex(8, metric="hamming")
    with pytest.raises(ValueError, match="dim"):
        llmkg.HnswIndex(0)
    with pytest.raises(ValueError, match="m must"):
        llmkg.HnswIndex(8, m=1)
    with pytest.raises(OverflowError):
        llmkg.HnswIndex(-3)


def test_lists_and_other_dtypes_are_accepted() -> None:
    index = llmkg.HnswIndex(3, metric="l2")
    index.add(np.array([1, 2], dtype=np.int32), [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    index.add([2**63 + 5], np.array([[0, 1, 0]], dtype=np.float64))
    assert 2**63 + 5 in index
    ids, _ = index.search([0.0, 1.0, 0.0], k=1)
    assert ids[0] == 2**63 + 5


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_score_rows_matches_numpy(metric: str) -> None:
    from llmkg._core import score_rows

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(37, 24)).astype(np.float32)
    rows[5] = 0.0  # a zero row: cosine 0, not NaN
    q = rng.normal(size=24).astype(np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(q)
        want = np.divide(rows @ q, norms, out=np.zeros(37, np.float32), where=norms > 0)
    elif metric == "ip":
        want = rows @ q
    else:
        want = -((rows - q) ** 2).sum(axis=1)
    got = score_rows(q, rows, metric)
    assert got.dtype == np.float32 and got.shape == (37,)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_score_rows_refuses_mismatched_or_strided_input() -> None:
    from llmkg._core import score_rows

    rows = np.ones((4, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="rows have 8 values, the query 7"):
        score_rows(np.ones(7, dtype=np.float32), rows)
    with pytest.raises(ValueError, match="C-contiguous"):
        score_rows(np.ones(4, dtype=np.float32), rows[:, ::2])
    with pytest.raises(ValueError, match="metric"):
        score_rows(np.ones(8, dtype=np.float32), rows, "manhattan")  # type: ignore[arg-type]


def _thread_priorities(prefix: str) -> list[tuple[int, int]]:
    """``(nice, scheduling policy)`` of this process's threads whose name starts with
    ``prefix``."""
    found = []
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name.startswith(prefix):
            fields = stat[stat.rindex(")") + 2 :].split()
            found.append((int(fields[16]), int(fields[38])))  # fields 19 and 41
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread policy is Linux's")
def test_background_adds_link_on_low_priority_threads() -> None:
    vectors = clustered(300, 16, seed=5)
    index = llmkg.HnswIndex(16)
    index.add(np.arange(1, 301), vectors, background=True)
    assert len(index) == 300
    ids, _ = index.search(vectors[7], k=1)
    assert ids[0] == 8
    found = _thread_priorities("llmkg-bg-")
    assert found and set(found) == {(10, os.SCHED_IDLE)}, found
    assert os.sched_getscheduler(0) == os.SCHED_OTHER, "the caller's own policy is untouched"
    assert os.getpriority(os.PRIO_PROCESS, 0) == 0, "the caller's own priority is untouched"
