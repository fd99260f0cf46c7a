"""Bytes per node of the HNSW index at 100,000 nodes, full precision against q8 codes,
from the core's own count (`HnswIndex.stats()["memory"]`), on the engine benchmark's facts
(60,000 real pypi-minilm-dev rows and 40,000 variants, 384 dimensions; m 16,
ef_construction 200):

- full: every row on the heap;
- q8 + mapped rows: q8 codes on the heap, full rows in a mapped file for rescoring (the
  engine's way: the page cache holds them, not the process);
- q8 codes only (`keep_full=False`): nothing to rescore with.

    PYTHONPATH=python .venv/bin/python benches/index_memory.py [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
from engine_data import make_facts
from record import run_info, save

from llmkg import HnswIndex

NODES = 100_000
BATCH = 10_000


def measure(vectors: np.ndarray, precision: str, keep_full: bool, mapped: Path | None) -> dict:
    index = HnswIndex(vectors.shape[1], m=16, ef_construction=200, keep_full=keep_full)
    if mapped is not None:
        index.map_full_rows(mapped)
    ids = np.arange(len(vectors), dtype=np.uint64)
    started = perf_counter()
    for s in range(0, len(vectors), BATCH):
        index.add(ids[s : s + BATCH], vectors[s : s + BATCH], precision=precision)
    memory = index.stats()["memory"]
    heap = sum(v for k, v in memory.items() if k != "mapped_vectors")
    return {
        "nodes": len(vectors),
        "build_s": perf_counter() - started,
        "heap_bytes_per_node": heap / len(vectors),
        "mapped_bytes_per_node": memory["mapped_vectors"] / len(vectors),
        "breakdown_bytes_per_node": {k: v / len(vectors) for k, v in memory.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="save the numbers there")
    args = parser.parse_args()
    vectors = make_facts(NODES).vectors
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["full"] = measure(vectors, "full", True, None)
        rows["q8 + mapped rows"] = measure(vectors, "q8", True, Path(tmp) / "rows.f32")
        rows["q8 codes only"] = measure(vectors, "q8", False, None)
    full = rows["full"]["heap_bytes_per_node"]
    print(f"{NODES:,} nodes of {vectors.shape[1]} dimensions, m 16:")
    for name, r in rows.items():
        print(
            f"  {name:<18} {r['heap_bytes_per_node']:7,.0f} B/node on the heap"
            f" ({r['heap_bytes_per_node'] / full:.2f}x full),"
            f" {r['mapped_bytes_per_node']:5,.0f} B/node mapped; built in {r['build_s']:.1f} s"
        )
    if args.json:
        run = run_info(sys.argv, "engine facts (pypi-minilm-dev), 384 dims", quick=False)
        save("index_memory", {"indexes": rows}, run, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
