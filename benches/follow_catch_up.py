"""What read-your-writes costs a search on the PostgreSQL store: the median latency of
``AllocationEngine.search`` with and without the catch-up check (one query of the
database's last sequence) on a small engine, against a throwaway local PostgreSQL server.

    PYTHONPATH=python python benches/follow_catch_up.py [facts] [searches] [--json PATH]

Searches alternate between the two ways, so that both see the same machine load;
``--json`` saves the medians with the run's details.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pglib import cluster
from record import run_info, save

from llmkg.engine import AllocationEngine, EngineConfig

DIM = 64


def main(facts: int = 1000, searches: int = 300, json_path: Path | None = None) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(facts, DIM)).astype(np.float32)
    with cluster() as pg, tempfile.TemporaryDirectory() as tmp:
        config = EngineConfig(
            data_directory=Path(tmp),
            dim=DIM,
            checkpoint_interval=0,
            store_backend="postgresql",
            postgres_dsn=pg.create_database(),
        )
        with AllocationEngine(config) as engine:
            for i, v in enumerate(vectors):
                f = {"subject": f"s{i}", "predicate": "p", "object": f"o{i}", "confidence": 0.5}
                engine.allocate({**f, "embedding": v.tolist()})
            engine.sync_index()
            catch_up = engine._catch_up
            timings: dict[bool, list[float]] = {True: [], False: []}
            for n in range(2 * searches + 20):
                checked = n % 2 == 0
                engine._catch_up = catch_up if checked else lambda: None  # type: ignore[method-assign]
                query = vectors[n % facts].tolist()
                started = time.perf_counter()
                engine.search(embedding=query, k=10)
                if n >= 20:  # the first ones warm the caches
                    timings[checked].append(time.perf_counter() - started)
            engine._catch_up = catch_up  # type: ignore[method-assign]
    with_check = statistics.median(timings[True]) * 1e3
    without = statistics.median(timings[False]) * 1e3
    print(f"{facts} facts, dim {DIM}, {searches} searches each, medians:")
    print(f"  without the catch-up check: {without:.3f} ms")
    print(f"  with the catch-up check:    {with_check:.3f} ms (+{with_check - without:.3f} ms)")
    if json_path:
        numbers = {"facts": facts, "searches": searches, "median_ms": {}}
        numbers["median_ms"] = {"without_check": without, "with_check": with_check}
        run = run_info(["python", *sys.argv], f"{facts:,} random vectors, dim {DIM}", False)
        print(f"(saved: {save('follow_catch_up', numbers, run, json_path)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("facts", nargs="?", type=int, default=1000)
    parser.add_argument("searches", nargs="?", type=int, default=300)
    parser.add_argument("--json", type=Path, help="save the medians and the run's details here")
    args = parser.parse_args()
    main(args.facts, args.searches, args.json)
