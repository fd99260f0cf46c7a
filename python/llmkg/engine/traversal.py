"""Breadth-first walks over the graph's entities, for ``Graph.traverse`` and the expansion
of search hits.

A walk holds a frontier of entities (subject or object strings). A hop reads the live
facts that have a frontier entity in a role the direction follows (``out``: as subject,
``in``: as object, ``both``: either), keeps those it has not reached before, by node id,
and takes their far ends (``out``: the objects, ``in``: the subjects, ``both``: either
end) that it has not visited as the next frontier. Each fact is reached once, at its
least hop; each entity is expanded once.

Bounded work: a hop of a walk examines at most ``rows_per_hop`` rows (or one a window,
should a frontier hold more windows than that). The store reads, for each frontier
entity and role, a *window*: its facts of lowest ids, at first one width for every
entity of the hop (the allowance shared evenly). A fact past a full window is unread; it
could change the answer only if the window ends below the hop's cut (the id of the first
fact the budget left out, or past every id when nothing was left out). Such windows are
read again, wider, with what the other entities left of the allowance (at most
``TOP_UPS`` times); if one still hides facts the walk is marked ``capped``. Without a
predicate filter a window of ``budget + reached + 1`` facts always holds every fact the
hop keeps (at most ``reached`` of them were reached before), so no window is read wider
than that: a hub entity costs what a small one does, and the answer stays exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from llmkg.engine.facts import FactError, text_field
from llmkg.store.records import NO_END, ROLES, Node

if TYPE_CHECKING:
    from llmkg.store import Store

MAX_HOPS = 3
MAX_FACTS = 1000
DEFAULT_FACTS = 100
MAX_START = 100  # start entities or nodes
MAX_PREDICATES = 100
ROWS_PER_HOP = 20_000  # rows a walk reads at most in one hop (every window together)
TOP_UPS = 2  # reads again of the windows that hide facts, in one hop
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

    def __init__(self, frontier: Iterable[str], reached: Iterable[Node], budget: int) -> None:
        self.frontier = sorted(set(frontier))
        self.visited = set(self.frontier)
        self.seen = {r.node_id for r in reached}
        self.reached: list[tuple[int, Node]] = []
        self.budget = budget
        self.truncated = False  # the budget left reachable facts out
        self.capped = False  # a full window may have hidden facts from the answer

    @property
    def active(self) -> bool:
        return bool(self.frontier) and not self.truncated


class _Windows:
    """The windows one hop read: each name's facts by role, where a full window ends, how
    wide each was read, and how many rows the reads may have examined (``spent``)."""

    def __init__(self, store: Store, predicates: Sequence[str] | None) -> None:
        self.store = store
        self.predicates = predicates
        self.rows: dict[str, dict[str, list[Node]]] = {role: {} for role in ROLES}
        self.ends: dict[str, dict[str, int]] = {role: {} for role in ROLES}
        self.width: dict[tuple[str, str], int] = {}
        self.spent = 0

    def read(self, role: str, names: Sequence[str], width: int) -> None:
        rows, ends = self.store.facts_around(names, role, self.predicates, width)
        by_name: dict[str, list[Node]] = {name: [] for name in names}
        for r in rows:
            by_name[getattr(r, role)].append(r)
        self.rows[role].update(by_name)
        for name in names:
            self.ends[role].pop(name, None)
            self.width[role, name] = width
            # A window that is not full examined its rows; with a filter, the rows that
            # did not match are not counted: charge the window's width then.
            full = name in ends
            self.spent += width if full or self.predicates else len(by_name[name])
        self.ends[role].update(ends)

    def found(self, w: Walk, direction: str) -> tuple[list[Node], set[tuple[str, str]]]:
        """The walk's new facts by id, and the full windows of its frontier that may hide
        facts from its answer: those that end below its cut."""
        found: dict[int, Node] = {}
        full: list[tuple[str, str, int]] = []
        for role in NEAR[direction]:
            rows, ends = self.rows[role], self.ends[role]
            for name in w.frontier:
                for r in rows.get(name, ()):
                    if r.node_id not in w.seen:
                        found[r.node_id] = r
                end = ends.get(name)
                if end is not None:
                    full.append((role, name, end))
        ordered = [found[i] for i in sorted(found)]
        cut = ordered[w.budget].node_id if len(ordered) > w.budget else NO_END
        return ordered, {(role, name) for role, name, end in full if end < cut}


def step(
    store: Store,
    walks: Sequence[Walk],
    hop: int,
    direction: str,
    predicates: Sequence[str] | None,
    rows_per_hop: int | None = None,
) -> None:
    """Advance every active walk by one hop: one store query per role for all of them,
    and up to ``TOP_UPS`` more for the windows that hide facts while the allowance lasts.
    ``rows_per_hop``: each walk's allowance (``ROWS_PER_HOP`` by default)."""
    active = [w for w in walks if w.active]
    if not active:
        return
    allowance = (ROWS_PER_HOP if rows_per_hop is None else rows_per_hop) * len(active)
    roles = NEAR[direction]
    names = sorted(set().union(*(w.frontier for w in active)))
    # The walks' allowances shared evenly over the windows they read together, at first.
    width = max(1, allowance // (len(names) * len(roles)))
    widest = allowance if predicates else max(w.budget + len(w.seen) + 1 for w in active)
    width = min(width, widest)
    windows = _Windows(store, predicates)
    for role in roles:
        windows.read(role, names, width)
    # Most entities use little of their share: what is left widens the full windows that
    # may hide facts (a hub's), read again from their start (a window has no cursor).
    for _ in range(TOP_UPS):
        hiding = sorted(set().union(*(windows.found(w, direction)[1] for w in active)))
        again = sum(windows.width[key] for key in hiding)
        extra = (allowance - windows.spent - again) // max(1, len(hiding))
        if not hiding or extra < 1:
            break
        groups: dict[tuple[str, int], list[str]] = {}
        for role, name in hiding:
            groups.setdefault((role, windows.width[role, name]), []).append(name)
        for (role, wide), group in groups.items():
            windows.read(role, group, min(wide + extra, widest))
    for w in active:
        _advance(w, hop, direction, *windows.found(w, direction))


def _advance(
    w: Walk, hop: int, direction: str, ordered: list[Node], hiding: set[tuple[str, str]]
) -> None:
    kept = ordered[: w.budget]
    w.truncated = len(ordered) > w.budget
    w.capped = w.capped or bool(hiding)
    w.reached += [(hop, r) for r in kept]
    w.seen.update(r.node_id for r in kept)
    w.budget -= len(kept)
    far = {getattr(r, role) for r in kept for role in FAR[direction]} - w.visited
    w.visited |= far
    w.frontier = [] if w.truncated else sorted(far)


def start_walk(rows: Sequence[Node], direction: str, budget: int) -> Walk:
    """A walk from facts (hop 0, kept in id order within ``budget``): their far ends are
    its first frontier."""
    ordered = sorted(rows, key=lambda r: r.node_id)
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
