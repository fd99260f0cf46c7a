"""A plain model of the graph's traversals: breadth-first search over a list of facts,
written without the engine's windows and budgets, for the traversal tests to compare
with."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    node_id: int
    subject: str
    predicate: str
    object: str


def bfs(
    model: dict[int, Row],
    entities: list[str] | None,
    nodes: list[int] | None,
    hops: int,
    direction: str,
    predicates: list[str] | None,
) -> list[tuple[int, int]]:
    """Every fact within ``hops``, as ``(hop, node id)`` in answer order: a plain BFS."""
    near = {"out": ("subject",), "in": ("object",), "both": ("subject", "object")}[direction]
    far = {"out": ("object",), "in": ("subject",), "both": ("subject", "object")}[direction]
    level: dict[int, int] = {}
    if nodes is not None:
        starts = [model[i] for i in nodes if i in model]
        level.update((r.node_id, 0) for r in starts)
        frontier = {getattr(r, end) for r in starts for end in far}
    else:
        frontier = set(entities or [])
    visited = set(frontier)
    for hop in range(1, hops + 1):
        new = [
            r
            for r in model.values()
            if r.node_id not in level
            and (predicates is None or r.predicate in predicates)
            and any(getattr(r, role) in frontier for role in near)
        ]
        level.update((r.node_id, hop) for r in new)
        frontier = {getattr(r, end) for r in new for end in far} - visited
        visited |= frontier
    return sorted((hop, i) for i, hop in level.items())


def expected_expansion(
    model: dict[int, Row],
    hits: list[int],
    hops: int,
    max_facts: int,
    predicates: list[str] | None,
) -> tuple[list[tuple[int, int, int]], bool]:
    """``(source, hop, node id)`` of every fact connected to the hits (node ids, best
    first), by the hits' rank, then hop, then id, without the hits and repeats; and
    whether max_facts cut it."""
    hit_ids = set(hits)
    out: list[tuple[int, int, int]] = []
    for hit in hits:
        for hop, node_id in bfs(model, None, [hit], hops, "both", predicates):
            if hop > 0 and node_id not in hit_ids and node_id not in {o[2] for o in out}:
                out.append((hit, hop, node_id))
    return out[:max_facts], len(out) > max_facts
