"""Breadth-first walks over the graph's entities, for ``Graph.traverse`` and the expansion
of search hits.

A walk holds a frontier of entities (subject or object strings). A hop reads the live
facts that have a frontier entity in a role the direction follows (``out``: as subject,
``in``: as object, ``both``: either), keeps those it has not reached before, by node id,
and takes their far ends (``out``: the objects, ``in``: the subjects, ``both``: either
end) that it has not visited as the next frontier. Each fact is reached once, at its
least hop; each entity is expanded once.

Bounded work: a hop of a walk reads at most ``rows_per_hop`` rows. The store reads, for
each frontier entity and role, a *window*: its facts of lowest ids, up to one width for
every entity of the hop. A fact past a full window is unread; it could change the answer
only if the window ends below the hop's cut (the id of the first fact the budget left
out, or past every id when nothing was left out), and then the walk is marked
``capped``. Without a predicate filter a window of ``budget + reached + 1`` facts always
holds every fact the hop keeps (at most ``reached`` of them were reached before), so a
hub entity costs what a small one does and the answer stays exact; the width is capped at
that.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from llmkg.engine.facts import FactError, text_field
from llmkg.store.records import NO_END, FactRow

if TYPE_CHECKING:
    from llmkg.store import Store

MAX_HOPS = 3
MAX_FACTS = 1000
DEFAULT_FACTS = 100
MAX_START = 100  # start entities or nodes
MAX_PREDICATES = 100
ROWS_PER_HOP = 20_000  # rows a walk reads at most in one hop (every window together)
MAX_NODE_ID = 2**53 - 1
# The expansion of search hits: each hit a walk of its own (direction "both"), a batch of
# walks reading together, each with a smaller allowance than a traversal's.
EXPAND_MAX_HOPS = 2
EXPAND_MAX_FACTS = 200
EXPAND_DEFAULT_FACTS = 50
EXPAND_BATCH = 8
EXPAND_ROWS_PER_HOP = 5_000

# The roles in which a frontier entity is looked up, and the ends of a fact reached that
# make the next frontier.
NEAR = {"out": ("subject",), "in": ("object",), "both": ("subject", "object")}
FAR = {"out": ("object",), "in": ("subject",), "both": ("subject", "object")}


class Walk:
    """One breadth-first walk: its frontier, what it visited, what it reached (``(hop,
    fact)`` by hop, then id), and how many facts it may still keep (``budget``)."""

    def __init__(self, frontier: Iterable[str], reached: Iterable[FactRow], budget: int) -> None:
        self.frontier = sorted(set(frontier))
        self.visited = set(self.frontier)
        self.seen = {r.node_id for r in reached}
        self.reached: list[tuple[int, FactRow]] = []
        self.budget = budget
        self.truncated = False  # the budget left reachable facts out
        self.capped = False  # a full window may have hidden facts from the answer

    @property
    def active(self) -> bool:
        return bool(self.frontier) and not self.truncated


def step(
    store: Store,
    walks: Sequence[Walk],
    hop: int,
    direction: str,
    predicates: Sequence[str] | None,
    rows_per_hop: int | None = None,
) -> None:
    """Advance every active walk by one hop: one store query per role for all of them.
    ``rows_per_hop``: each walk's allowance (``ROWS_PER_HOP`` by default)."""
    active = [w for w in walks if w.active]
    if not active:
        return
    rows_per_hop = ROWS_PER_HOP if rows_per_hop is None else rows_per_hop
    roles = NEAR[direction]
    names = sorted(set().union(*(w.frontier for w in active)))
    # The walks' allowances shared evenly over the windows they read together.
    width = max(1, rows_per_hop * len(active) // (len(names) * len(roles)))
    if predicates is None:
        width = min(width, max(w.budget + len(w.seen) + 1 for w in active))
    windows: dict[str, dict[str, list[FactRow]]] = {}
    ends: dict[str, dict[str, int]] = {}
    for role in roles:
        rows, ends[role] = store.facts_around(names, role, predicates, width)
        by_name: dict[str, list[FactRow]] = {}
        for r in rows:
            by_name.setdefault(getattr(r, role), []).append(r)
        windows[role] = by_name
    for w in active:
        _advance(w, hop, direction, windows, ends)


def _advance(
    w: Walk,
    hop: int,
    direction: str,
    windows: dict[str, dict[str, list[FactRow]]],
    ends: dict[str, dict[str, int]],
) -> None:
    found: dict[int, FactRow] = {}
    window_ends: list[int] = []
    for role in NEAR[direction]:
        for name in w.frontier:
            for r in windows[role].get(name, ()):
                if r.node_id not in w.seen:
                    found[r.node_id] = r
            if name in ends[role]:
                window_ends.append(ends[role][name])
    ordered = [found[i] for i in sorted(found)]
    kept = ordered[: w.budget]
    cut = NO_END
    if len(ordered) > w.budget:
        w.truncated = True
        cut = ordered[w.budget].node_id
    if any(end < cut for end in window_ends):
        w.capped = True
    w.reached += [(hop, r) for r in kept]
    w.seen.update(r.node_id for r in kept)
    w.budget -= len(kept)
    far = {getattr(r, role) for r in kept for role in FAR[direction]} - w.visited
    w.visited |= far
    w.frontier = [] if w.truncated else sorted(far)


def start_walk(rows: Sequence[FactRow], direction: str, budget: int) -> Walk:
    """A walk from facts (hop 0, kept in id order within ``budget``): their far ends are
    its first frontier."""
    ordered = sorted(rows)
    kept = ordered[:budget]
    walk = Walk(
        {getattr(r, role) for r in kept for role in FAR[direction]}, kept, budget - len(kept)
    )
    walk.reached = [(0, r) for r in kept]
    walk.truncated = len(ordered) > budget
    return walk


# ---- validation ---------------------------------------------------------------------------


def _int_in(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FactError(field, f"must be an integer from {low} to {high}")
    return value


def _names(value: Any, field: str, top: int, max_length: int) -> list[str]:
    """A non-empty list of at most ``top`` names, canonicalized, without repeats."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise FactError(field, "must be a list of strings")
    if not 1 <= len(value) <= top:
        raise FactError(field, f"must hold 1 to {top} items")
    names = [text_field(v, f"{field}[{i}]", max_length) for i, v in enumerate(value)]
    return list(dict.fromkeys(names))


def check_hops(value: Any, field: str, top: int) -> int:
    return _int_in(value, field, 1, top)


def check_direction(value: Any) -> str:
    if not isinstance(value, str) or value not in NEAR:
        raise FactError("direction", 'must be "out", "in" or "both"')
    return value


def check_predicates(value: Any, field: str, max_length: int) -> list[str] | None:
    if value is None:
        return None
    return _names(value, field, MAX_PREDICATES, max_length)


def check_start(entities: Any, nodes: Any, max_length: int) -> tuple[list[str], list[int]]:
    """The start of a traversal: entity names (canonicalized) or node ids, not both."""
    if (entities is None) == (nodes is None):
        raise FactError("start", "give exactly one of entities and nodes")
    if entities is not None:
        return _names(entities, "start.entities", MAX_START, max_length), []
    if isinstance(nodes, (str, bytes)) or not isinstance(nodes, Sequence):
        raise FactError("start.nodes", "must be a list of node ids")
    if not 1 <= len(nodes) <= MAX_START:
        raise FactError("start.nodes", f"must hold 1 to {MAX_START} items")
    ids = [_int_in(v, f"start.nodes[{i}]", 1, MAX_NODE_ID) for i, v in enumerate(nodes)]
    return [], list(dict.fromkeys(ids))
