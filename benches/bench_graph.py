"""Latency of the graph's reads on an SQLite store of 100,000 facts.

Run: ``python benches/bench_graph.py [directory]`` (the store is built there the first
time, in a temporary folder without an argument). The facts come from a seeded
vocabulary of 1,000 subjects, 20 predicates and 1,000 objects (about 100 facts per
subject and 5,000 per predicate). Each query kind runs a few hundred times with varied
values, through ``Graph.facts_matching`` and friends (validation, then the store's
query; no HTTP, no index), and the median and 99th percentile are printed in
milliseconds.
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from llmkg.engine.config import EngineConfig
from llmkg.engine.graph import Graph
from llmkg.store import SqliteStore, Store

FACTS = 100_000
QUERIES = 300


class Reads(Graph):
    def __init__(self, store: Store) -> None:
        self.store = store
        self.config = EngineConfig()


def build(store: SqliteStore, rng: random.Random) -> None:
    vec = np.ones(4, dtype=np.float32)
    stored = store.count()
    while stored < FACTS:
        s, p, o = rng.randrange(1000), rng.randrange(20), rng.randrange(1000)
        # An earlier node as parent: ids are 1..stored (nothing is deleted here).
        parent = rng.randrange(1, stored + 1) if stored else None
        _, created = store.insert(
            f"subject {s}", f"predicate {p}", f"object {o}", rng.random(), vec, parent
        )
        stored += created


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main(directory: Path) -> None:
    rng = random.Random(1)
    store = SqliteStore(directory, durability="interval")
    try:
        if store.count() < FACTS:
            build(store, rng)
        g = Reads(store)
        kinds: dict[str, Callable[[], Any]] = {
            "subject, limit 100": lambda: g.facts_matching(
                subject=f"subject {rng.randrange(1000)}"
            ),
            "predicate, limit 100": lambda: g.facts_matching(
                predicate=f"predicate {rng.randrange(20)}"
            ),
            "subject+predicate": lambda: g.facts_matching(
                subject=f"subject {rng.randrange(1000)}", predicate=f"predicate {rng.randrange(20)}"
            ),
            "predicate+object": lambda: g.facts_matching(
                predicate=f"predicate {rng.randrange(20)}", object=f"object {rng.randrange(1000)}"
            ),
            "predicate, page at id 50000": lambda: g.facts_matching(
                predicate=f"predicate {rng.randrange(20)}", after=50_000
            ),
            "entity view, limit 100": lambda: g.entity(f"object {rng.randrange(1000)}"),
            "entities, prefix": lambda: g.entities(prefix=f"subject {rng.randrange(100)}"),
            "children": lambda: g.children(rng.randrange(1, 1000)),
            "ancestors": lambda: g.ancestors(rng.randrange(1, FACTS)),
        }
        print(f"{store.count()} facts in {directory}")
        for name, fn in kinds.items():
            fn()  # warm the page cache
            ms = sorted(timed(fn) for _ in range(QUERIES))
            p99 = ms[int(len(ms) * 0.99) - 1]
            print(f"{name:32} median {statistics.median(ms):7.3f} ms   p99 {p99:7.3f} ms")
    finally:
        store.close()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
