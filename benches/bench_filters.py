"""Filtered search on 60,000 real vectors: the filter evaluated in the core (``FactIndex``)
against the former Python fact index, which built an array of allowed ids per search.

Run: ``python benches/bench_filters.py [--queries N] [--old PATH] [--index PATH]``.
``--old`` is the former ``python/llmkg/engine/filters.py`` (e.g. ``git show
<rev>:python/llmkg/engine/filters.py > /tmp/old_filters.py``); without it only the
core's figures are printed. ``--index`` keeps the built index there for the next run;
``--json`` saves the numbers.

The facts are pypi-minilm-dev's 60,000 rows (subject = package name, object = summary,
embedding = its base row), with the predicate alternating between two names so that a
predicate filter allows half of the nodes, and the confidence uniform in [0.5, 1) so
that ``min_confidence`` 0.75 allows half too. One index (the
engine's default parameters) serves both sides; each query runs the old way and the new
way back to back (which goes first alternates: the second finds the query's nodes in the
CPU's caches), so that the two see the same machine. Latency is per search, filter
construction included (what ``AllocationEngine.search`` spends on it). Memory per node:
``tracemalloc`` over the former index's build (its strings made fresh, as the engine's
come from store rows), and the core's own count (``FactIndex.memory_bytes``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from ann_data import data_dir
from engine_data import SEED, load_queries
from record import run_info, save

from llmkg import FactIndex, HnswIndex
from llmkg.engine.config import EngineConfig
from llmkg.engine.filters import search_filter

NODES = 60_000
PREDICATES = ("described_as", "summarized_as")
MAX_TEXT = 4096


def fresh(text: str) -> str:
    return (text + " ")[:-1]  # a new string object, as a store row's would be


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_old(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("old_filters", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_index(vectors: np.ndarray, path: Path | None) -> HnswIndex:
    if path is not None and path.exists():
        return HnswIndex.load(path)
    c = EngineConfig()
    index = HnswIndex(
        vectors.shape[1],
        metric="cosine",
        m=c.m,
        ef_construction=c.ef_construction,
        ef_search=c.ef_search,
    )
    index.add(np.arange(1, len(vectors) + 1, dtype=np.uint64), vectors)
    if path is not None:
        index.save(path)
    return index


def timed(
    times: list[float],
    run: Callable[[np.ndarray, dict[str, Any]], list[int]],
    q: np.ndarray,
    f: dict[str, Any],
) -> list[int]:
    started = time.perf_counter()
    found = run(q, f)
    times.append((time.perf_counter() - started) * 1000)
    return found


def p50_p99(ms: list[float]) -> dict[str, float]:
    return {"p50_ms": statistics.median(ms), "p99_ms": statistics.quantiles(ms, n=100)[98]}


def percentiles(ms: list[float]) -> str:
    p = p50_p99(ms)
    return f"p50 {p['p50_ms']:.3f} ms  p99 {p['p99_ms']:.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--old", type=Path)
    parser.add_argument("--index", type=Path, help="where to keep the built index for reruns")
    parser.add_argument("--json", type=Path, help="save the numbers and the run's details here")
    args = parser.parse_args()

    vectors = np.ascontiguousarray(np.load(data_dir() / "base.f16.npy")[:NODES], np.float32)
    with (data_dir() / "texts.tsv").open(encoding="utf-8") as f:
        next(f)  # header: id name summary
        rows = [line.rstrip("\n").split("\t") for line in f][:NODES]
    triples = [(name, PREDICATES[i % 2], summary) for i, (_, name, summary) in enumerate(rows)]
    confidence = np.random.default_rng(SEED).uniform(0.5, 1.0, NODES).tolist()
    print(f"{NODES:,} real pypi-minilm-dev rows; building the index ...", flush=True)
    started = time.perf_counter()
    index = build_index(vectors, args.index)
    print(f"index built in {time.perf_counter() - started:.0f}s", flush=True)

    def fill(facts: Any) -> None:
        for i, (s, p, o) in enumerate(triples):
            facts.add(i + 1, fresh(s), fresh(p), fresh(o), confidence[i])

    resident = rss()
    new = FactIndex()
    fill(new)
    grown = rss() - resident
    result: dict[str, Any] = {
        "nodes": NODES,
        "queries": args.queries,
        "core_bytes_per_node": new.memory_bytes() / NODES,
        "core_rss_per_node": grown / NODES,
        "cases": {},
    }
    print(
        f"core FactIndex: {new.memory_bytes() / NODES:.0f} bytes per node by its own count,"
        f" RSS +{grown / NODES:.0f} bytes per node"
    )
    old = None
    if args.old is not None:
        module = load_old(args.old)
        resident = rss()
        tracemalloc.start()
        old = module.FactIndex(MAX_TEXT)
        fill(old)
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        grown = rss() - resident
        result["python_tracemalloc_per_node"] = held / NODES
        result["python_rss_per_node"] = grown / NODES
        print(
            f"former Python FactIndex: {held / NODES:.0f} bytes per node by tracemalloc,"
            f" RSS +{grown / NODES:.0f} bytes per node"
        )

    queries = load_queries()[: args.queries]
    subject_of = [triples[(i * 7919) % NODES][0] for i in range(len(queries))]
    cases: dict[str, Callable[[int], dict[str, Any]]] = {
        "min_confidence 0.75 (half the nodes)": lambda i: {"min_confidence": 0.75},
        "subject (one package's nodes)": lambda i: {"subject": subject_of[i]},
        "predicate (half the nodes)": lambda i: {"predicate": PREDICATES[i % 2]},
    }

    def run_core(q: np.ndarray, f: dict[str, Any]) -> list[int]:
        return index.search(q, k=10, filter=search_filter(new, f, MAX_TEXT))[0].tolist()

    def run_python(q: np.ndarray, f: dict[str, Any]) -> list[int]:
        return index.search(q, k=10, filter=old.allowed(f))[0].tolist()

    plain = []
    for q in queries:
        t = time.perf_counter()
        index.search(q, k=10)
        plain.append((time.perf_counter() - t) * 1000)
    print(f"\nno filter: {percentiles(plain)}")
    result["no_filter"] = p50_p99(plain)
    for name, flt in cases.items():
        times_new: list[float] = []
        times_old: list[float] = []
        same = 0
        for i, q in enumerate(queries):
            f = flt(i)
            sides = [(times_new, run_core)] + ([(times_old, run_python)] if old is not None else [])
            if i % 2:  # the second search of a query finds its nodes in the CPU's caches
                sides.reverse()
            answers = [timed(times, run, q, f) for times, run in sides]
            same += answers[0] == answers[-1]
        print(f"{name}:")
        if old is not None:
            print(f"  before (Python ids): {percentiles(times_old)}")
        print(f"  after  (core):       {percentiles(times_new)}")
        case: dict[str, Any] = {"core": p50_p99(times_new)}
        if old is not None:
            print(f"  same answers: {same}/{len(queries)}")
            case.update(python=p50_p99(times_old), same_answers=same)
        result["cases"][name] = case
    if args.json is not None:
        run = run_info(["python", *sys.argv], "pypi-minilm-dev", quick=False)
        print(f"(saved: {save('filters', result, run, args.json)})")


if __name__ == "__main__":
    sys.exit(main())
