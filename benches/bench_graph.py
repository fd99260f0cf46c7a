"""Latency of the graph's reads on SQLite stores of 100,000 facts.

Run: ``python benches/bench_graph.py [directory] [--json PATH]`` (the stores are built
there the first time, in a temporary folder without an argument; ``--json`` saves the
numbers). The pattern reads' facts come from a
seeded vocabulary of 1,000 subjects, 20 predicates and 1,000 objects (about 100 facts per
subject and 5,000 per predicate). Subjects and objects never meet there, so traversals
get a store of their own (``traverse/``): 10,000 entities that are subjects and objects
both, each the subject of about 10 facts, objects drawn with a skew (the cube of a
uniform draw: entity 0 is the object of about 4,600 facts, entity 2 of 900, the median
entity of 5), so that walks run into hubs. Each query kind runs a few hundred times with
varied values, through ``Graph.facts_matching``, ``Graph.traverse`` and friends
(validation, then the store's queries; no HTTP, no index), and the median and 99th
percentile are printed in milliseconds, with the mean number of facts a traversal answers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from record import run_info, save

from llmkg.engine.config import EngineConfig
from llmkg.engine.graph import Graph
from llmkg.engine.results import Traversal
from llmkg.store import SqliteStore, Store

FACTS = 100_000
QUERIES = 300
ENTITIES = 10_000
# One row per query kind, for --json.
ROWS: list[dict[str, Any]] = []


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


def build_walkable(store: SqliteStore, rng: random.Random) -> None:
    vec = np.ones(4, dtype=np.float32)
    stored = store.count()
    while stored < FACTS:
        s = rng.randrange(ENTITIES)
        o = int(ENTITIES * rng.random() ** 3)
        _, created = store.insert(
            f"entity {s}", f"predicate {rng.randrange(20)}", f"entity {o}", rng.random(), vec
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
            report(name, fn)
    finally:
        store.close()
    traverse(directory / "traverse", rng)


def report(name: str, fn: Callable[[], Any]) -> None:
    fn()  # warm the page cache
    answers: list[Any] = []
    ms = sorted(timed(lambda: answers.append(fn())) for _ in range(QUERIES))
    p99 = ms[int(len(ms) * 0.99) - 1]
    line = f"{name:32} median {statistics.median(ms):7.3f} ms   p99 {p99:7.3f} ms"
    row: dict[str, Any] = {"query": name, "median_ms": statistics.median(ms), "p99_ms": p99}
    if isinstance(answers[0], Traversal):
        facts = statistics.mean(len(a.facts) for a in answers)
        capped = sum(a.capped for a in answers)
        line += f"   {facts:6.0f} facts, {capped} capped"
        row.update(mean_facts=facts, capped=capped)
    ROWS.append(row)
    print(line)


def traverse(directory: Path, rng: random.Random) -> None:
    store = SqliteStore(directory, durability="interval")
    try:
        if store.count() < FACTS:
            build_walkable(store, rng)
        g = Reads(store)

        def entity() -> list[str]:
            return [f"entity {rng.randrange(ENTITIES)}"]

        kinds: dict[str, Callable[[], Any]] = {}
        for direction in ("out", "both"):
            for hops in (1, 2, 3):
                kinds[f"traverse {direction}, {hops} hop{'s' * (hops > 1)}"] = (
                    lambda d=direction, h=hops: g.traverse(
                        entity(), hops=h, direction=d, max_facts=1000
                    )
                )
        kinds["traverse out, 3 hops, 2 preds"] = lambda: g.traverse(
            entity(), hops=3, predicates=["predicate 1", "predicate 2"], max_facts=1000
        )
        kinds["traverse in, 1 hop, hub"] = lambda: g.traverse(
            [f"entity {rng.randrange(3)}"], direction="in", max_facts=1000
        )
        kinds["traverse from 10 nodes, 2 hops"] = lambda: g.traverse(
            nodes=rng.sample(range(1, FACTS), 10), hops=2, max_facts=1000
        )
        print(f"{store.count()} facts over {ENTITIES} entities in {directory}; max_facts 1000")
        for name, fn in kinds.items():
            report(name, fn)
    finally:
        store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, help="where the stores are kept")
    parser.add_argument("--json", type=Path, help="save the numbers and the run's details here")
    args = parser.parse_args()
    if args.directory:
        main(args.directory)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
    if args.json:
        dataset = f"seeded SQLite stores of {FACTS:,} facts ({ENTITIES:,} entities to traverse)"
        run = run_info(["python", *sys.argv], dataset, quick=False)
        print(f"(saved: {save('graph', {'queries': QUERIES, 'rows': ROWS}, run, args.json)})")
