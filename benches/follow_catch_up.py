"""What read-your-writes costs a search on the PostgreSQL store: the median latency of
``AllocationEngine.search`` with and without the catch-up check (one query of the
database's last sequence) on a small engine, against a throwaway local PostgreSQL server.

    PYTHONPATH=python python benches/follow_catch_up.py [facts] [searches]

Searches alternate between the two ways, so that both see the same machine load.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from pglib import cluster

from llmkg.engine import AllocationEngine, EngineConfig

DIM = 64


def main(facts: int = 1000, searches: int = 300) -> None:
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


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
