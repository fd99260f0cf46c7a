"""allocate_many: a batch is placed as one allocation after another would place it (the
same nodes, parents, neighbours and precisions), in a few calls: one commit per run of new
facts. Stored and repeated triples in a batch are answered as ``allocate`` answers them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg.engine import AllocationEngine, EngineConfig
from llmkg.engine.bulk import RUN
from llmkg.engine.results import AllocationResult

DIM = 16


def clustered(i: int) -> list[float]:
    """Facts in 8 tight clusters: most find a parent, often one of the same batch."""
    rng = np.random.default_rng(1000 + i)
    center = np.random.default_rng(i % 8).normal(size=DIM)
    v = center + 0.15 * rng.normal(size=DIM)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


def fact(i: int, confidence: float = 0.5, **kw: Any) -> dict[str, Any]:
    return {"subject": f"s{i}", "predicate": "p", "object": f"o{i}",
            "confidence": confidence, "embedding": clustered(i), **kw}  # fmt: skip


def config(path: Path, metric: str = "cosine") -> EngineConfig:
    # Exact candidates either way (direct), so that both orders of work see the same nodes.
    return EngineConfig(
        data_directory=path,
        dim=DIM,
        metric=metric,
        direct_threshold=100_000,
        # l2's similarity is the negative squared distance.
        similarity_threshold=-0.2 if metric == "l2" else 0.9,
        neighbors=4,
        checkpoint_interval=0,
    )


def summary(r: AllocationResult) -> tuple[Any, ...]:
    return (
        r.node_id,
        r.created,
        None if r.parent is None else r.parent.node_id,
        [n.node_id for n in r.neighbors],
        r.precision,
        r.confidence,
        r.strategy,
    )


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
def test_a_batch_is_placed_as_one_allocation_after_another(tmp_path: Path, metric: str) -> None:
    first = [fact(i, confidence=[0.9, 0.5, 0.3][i % 3]) for i in range(40)]
    # A second batch: new facts, one stored already, one repeated within the batch.
    second = [*(fact(i) for i in range(40, 70)), fact(3, confidence=0.95), fact(45)]
    with AllocationEngine(config(tmp_path / "one", metric)) as one:
        singly = [one.allocate(f) for f in first + second]
    with AllocationEngine(config(tmp_path / "many", metric)) as many:
        batched = many.allocate_many(first) + many.allocate_many(second)
        similarities = [[round(n.similarity, 4) for n in r.neighbors] for r in batched]
    assert [summary(r) for r in batched] == [summary(r) for r in singly]
    assert similarities == [[round(n.similarity, 4) for n in r.neighbors] for r in singly]
    assert sum(r.parent is not None for r in batched) > 30, "the clusters give parents"
    assert not batched[-2].created and batched[-2].confidence == 0.95
    assert not batched[-1].created and batched[-1].node_id == batched[45].node_id


def test_a_run_of_new_facts_is_one_commit_and_searchable_at_once(tmp_path: Path) -> None:
    n = RUN + 10
    with AllocationEngine(config(tmp_path / "data")) as engine:
        engine.allocate(fact(10_000))
        commits = engine.store.commits
        results = engine.allocate_many([fact(i) for i in range(n)])
        assert engine.store.commits - commits == 2, "two runs: two transactions"
        assert len({r.node_id for r in results}) == n
        for i in (0, RUN - 1, n - 1):  # found before or after their link
            hit = engine.search(embedding=clustered(i), k=1)[0]
            assert hit.node_id == results[i].node_id and hit.node.subject == f"s{i}"
    with AllocationEngine(config(tmp_path / "data")) as reopened:
        node = reopened.get(results[-1].node_id)
        assert node is not None and node.parent == (
            None if results[-1].parent is None else results[-1].parent.node_id
        )
