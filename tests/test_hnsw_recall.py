"""Recall of HnswIndex on real sentence embeddings (20,000 of the pypi-minilm-dev set),
against exact ground truth: full precision, filters, removals and quantized codes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DevSlice

import llmkg

SEED = 42


def build(dev: DevSlice, ids: np.ndarray | None = None, **kwargs) -> llmkg.HnswIndex:
    precision = kwargs.pop("precision", None)
    index = llmkg.HnswIndex(dev.base.shape[1], seed=SEED, **kwargs)
    ids = np.arange(len(dev.base), dtype=np.uint64) if ids is None else ids
    index.add(ids, dev.base[ids.astype(np.int64)], precision=precision)
    return index


@pytest.fixture(scope="module")
def full(dev: DevSlice) -> llmkg.HnswIndex:
    return build(dev)


def recall_at(index: llmkg.HnswIndex, dev: DevSlice, ef: int, **kwargs) -> float:
    ids, _ = index.search(dev.queries, k=10, ef=ef, **kwargs)
    return dev.recall(ids.astype(np.int64))


def test_full_precision_recall(full: llmkg.HnswIndex, dev: DevSlice) -> None:
    r = recall_at(full, dev, ef=100)
    print(f"seed {SEED}: recall@10 full precision ef=100: {r:.4f}")
    assert r >= 0.95


def test_filter_applies_during_traversal(full: llmkg.HnswIndex, dev: DevSlice) -> None:
    rng = np.random.default_rng(SEED)
    allowed = np.sort(rng.choice(len(dev.base), len(dev.base) // 10, replace=False))
    scores = dev.queries @ dev.base[allowed].T
    truth = allowed[np.argsort(-scores, axis=1, kind="stable")[:, :10]]
    ids, _ = full.search(dev.queries, k=10, filter=llmkg.IdFilter(allowed))
    assert np.isin(ids, allowed).all()
    hits = sum(
        len(set(a.tolist()) & set(b.tolist()))
        for a, b in zip(ids.astype(np.int64), truth, strict=False)
    )
    r = hits / truth.size
    print(f"seed {SEED}: filtered (10%) recall@10: {r:.4f}")
    assert r >= 0.95


def test_selective_filter_is_exact(full: llmkg.HnswIndex, dev: DevSlice) -> None:
    allowed = np.arange(0, len(dev.base), 250)  # 0.4% of the points
    ids, scores = full.search(dev.queries[:50], k=10, filter=allowed)
    exact = dev.queries[:50] @ dev.base[allowed].T
    truth = allowed[np.argsort(-exact, axis=1, kind="stable")[:, :10]]
    np.testing.assert_array_equal(ids.astype(np.int64), truth)
    np.testing.assert_allclose(scores, -np.sort(-exact, axis=1)[:, :10], rtol=1e-4, atol=1e-5)


def test_recall_holds_after_removing_a_fifth(dev: DevSlice) -> None:
    rng = np.random.default_rng(SEED)
    removed = rng.choice(len(dev.base), len(dev.base) // 5, replace=False)
    kept = np.setdiff1d(np.arange(len(dev.base)), removed)
    index = build(dev)
    index.remove(removed)
    fresh = build(dev, ids=kept.astype(np.uint64))

    scores = dev.queries @ dev.base[kept].T
    truth = kept[np.argsort(-scores, axis=1, kind="stable")[:, :10]]

    def recall(ix: llmkg.HnswIndex) -> float:
        ids, _ = ix.search(dev.queries, k=10, ef=64)
        assert not np.isin(ids, removed).any()
        return (
            sum(
                len(set(a.tolist()) & set(b.tolist()))
                for a, b in zip(ids.astype(np.int64), truth, strict=False)
            )
            / truth.size
        )

    after, baseline = recall(index), recall(fresh)
    print(f"seed {SEED}: recall after removing 20%: {after:.4f}, fresh index: {baseline:.4f}")
    assert after >= baseline - 0.01


def test_q8_recall_and_memory(full: llmkg.HnswIndex, dev: DevSlice) -> None:
    # The same graph with q8 codes: what the codes cost, apart from construction (a
    # batch links on all cores, so two builds differ by up to ±0.003 at ef=32).
    same_graph = llmkg.HnswIndex.from_bytes(full.to_bytes())
    same_graph.set_precision(np.arange(len(dev.base), dtype=np.uint64), "q8")
    built_q8 = build(dev, precision="q8")
    for ef in (32, 100):
        r_full = recall_at(full, dev, ef)
        r_same, r_built = recall_at(same_graph, dev, ef), recall_at(built_q8, dev, ef)
        print(
            f"seed {SEED}: ef={ef} recall@10 full {r_full:.4f}, q8+rescore on its graph "
            f"{r_same:.4f}, built as q8 {r_built:.4f}"
        )
        assert r_same >= r_full - 0.003
        assert r_built >= r_full - 0.01
    codes_only = build(dev, precision="q8", keep_full=False)
    plain = build(dev, keep_full=False)
    ratio = codes_only.memory_bytes() / plain.memory_bytes()
    print(f"q8 keep_full=False memory: {ratio:.3f} of full")
    assert ratio <= 0.35


def test_binary_with_rescoring_reaches_recall(dev: DevSlice) -> None:
    binary = build(dev, precision="binary")
    best = max(recall_at(binary, dev, ef) for ef in (100, 200, 400))
    print(f"seed {SEED}: binary+rescore best recall@10 at ef<=400: {best:.4f}")
    assert best >= 0.90
    assert recall_at(binary, dev, 200) > recall_at(binary, dev, 200, rescore=False)
