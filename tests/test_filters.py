"""The fact index behind search filters: its min_confidence answer (vectorized) agrees
with a walk over every node through adds, confidence changes and removals."""

from __future__ import annotations

import random

from llmkg.engine.filters import FactIndex


def test_min_confidence_alone_matches_a_walk_over_every_node() -> None:
    facts = FactIndex(max_text_length=100)
    rng = random.Random(7)
    truth: dict[int, tuple[str, float]] = {}
    for step in range(5000):
        action = rng.random()
        node_id = rng.randrange(1, 3000)
        if action < 0.6:
            if node_id not in truth:
                subject = f"s{node_id % 7}"
                truth[node_id] = (subject, rng.random())
                facts.add(node_id, subject, "p", f"o{node_id}", truth[node_id][1])
        elif action < 0.8:
            if node_id in truth:
                truth[node_id] = (truth[node_id][0], rng.random())
                facts.set_confidence(node_id, truth[node_id][1])
        elif node_id in truth:
            subject, _ = truth.pop(node_id)
            facts.remove(node_id, subject, "p", f"o{node_id}")
        if step % 500 == 0:
            floor = rng.random()
            allowed = facts.allowed({"min_confidence": floor})
            assert allowed is not None
            assert sorted(allowed.tolist()) == sorted(
                i for i, (_, c) in truth.items() if c >= floor
            )
            with_subject = facts.allowed({"subject": "s3", "min_confidence": floor})
            assert with_subject is not None
            assert sorted(with_subject.tolist()) == sorted(
                i for i, (s, c) in truth.items() if s == "s3" and c >= floor
            )
    assert len(facts) == len(truth)
    assert facts.confidences() == {i: c for i, (_, c) in truth.items()}
