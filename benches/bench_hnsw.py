"""llmkg's HNSW index against hnswlib, faiss-cpu (IndexHNSWFlat) and instant-distance.

All at m=16, ef_construction=200 (instant-distance fixes its own M), on the
pypi-minilm-dev set: build time with 1 and 2 threads, recall@10 and queries/s over an ef
sweep, QPS at recall 0.90/0.95/0.99 (interpolated over the sweep), memory, and for llmkg
each precision with keep_full on and off. The tables print at the end of the run.

QPS is single-threaded and, to compare like with like, measured the same way for every
Python library: a Python loop issuing one query per call (that includes each library's
call overhead). Batch QPS (all queries in one call, one thread) is reported beside it.
llmkg is timed so at full precision and with q8 codes rescored by the full rows (on the
heap, then in a mapped file, as the engine keeps them); its other precisions by one batch
pass, for their recall.

    make bench                     # full set: 60,000 vectors (~15 min on 2 cores)
    LLMKG_BENCH_QUICK=1 make bench # first 10,000 vectors, to check that it all runs
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pytest
from ann_data import REPO, AnnData, K, recall_at_k, write_raw
from ann_report import LibResult, PrecisionResult, Report

M = 16
EF_CONSTRUCTION = 200
SEED = 42
EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
THREADS = [1, 2]
WARMUP = 20
REPEATS = 3


def run_sweep(
    ann: AnnData,
    set_ef: Callable[[int], None],
    one: Callable[[np.ndarray], np.ndarray],
    batch: Callable[[np.ndarray], np.ndarray] | None,
) -> list[dict[str, float]]:
    """For each ef: recall@10 and QPS of a one-query-per-call loop, then batch QPS.

    Each timing is the best of REPEATS passes: the machine is shared, and the best pass
    is the one least disturbed by other work.
    """
    points = []
    nq = ann.queries.shape[0]
    for ef in EFS:
        set_ef(ef)
        for q in ann.queries[:WARMUP]:
            one(q)
        found = np.empty((nq, K), dtype=np.int64)
        loop_s = float("inf")
        for _ in range(REPEATS):
            start = perf_counter()
            for i, q in enumerate(ann.queries):
                found[i] = one(q)
            loop_s = min(loop_s, perf_counter() - start)
        point = {"ef": ef, "recall": recall_at_k(found, ann.gt), "qps": nq / loop_s}
        if batch is not None:
            batch_s = float("inf")
            for _ in range(REPEATS):
                start = perf_counter()
                batch(ann.queries)
                batch_s = min(batch_s, perf_counter() - start)
            point["batch_qps"] = nq / batch_s
        points.append(point)
        print(f"  ef {ef:>4}  recall@10 {point['recall']:.4f}  {point['qps']:>9,.0f} q/s")
    return points


def test_hnswlib(ann: AnnData, report: Report) -> None:
    hnswlib = pytest.importorskip("hnswlib")
    res = LibResult("hnswlib")
    ids = np.arange(ann.n)
    for t in THREADS:
        index = hnswlib.Index(space="ip", dim=ann.dim)
        index.init_index(max_elements=ann.n, ef_construction=EF_CONSTRUCTION, M=M, random_seed=SEED)
        start = perf_counter()
        index.add_items(ann.base, ids, num_threads=t)
        res.build_seconds[t] = perf_counter() - start
        print(f"\nhnswlib: built with {t} thread(s) in {res.build_seconds[t]:.1f} s")
    index.set_num_threads(1)
    res.sweep = run_sweep(
        ann,
        set_ef=index.set_ef,
        one=lambda q: index.knn_query(q, k=K)[0][0],
        batch=lambda qs: index.knn_query(qs, k=K, num_threads=1)[0],
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.bin"
        index.save_index(str(path))
        res.memory_bytes = path.stat().st_size
    res.memory_how = "size of its saved index file"
    report.add(res)


def test_faiss_hnsw_flat(ann: AnnData, report: Report) -> None:
    faiss = pytest.importorskip("faiss")
    res = LibResult("faiss IndexHNSWFlat")
    for t in THREADS:
        faiss.omp_set_num_threads(t)
        index = faiss.IndexHNSWFlat(ann.dim, M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        start = perf_counter()
        index.add(ann.base)
        res.build_seconds[t] = perf_counter() - start
        print(f"\nfaiss: built with {t} thread(s) in {res.build_seconds[t]:.1f} s")
    faiss.omp_set_num_threads(1)

    def set_ef(ef: int) -> None:
        index.hnsw.efSearch = ef

    res.sweep = run_sweep(
        ann,
        set_ef=set_ef,
        one=lambda q: index.search(q[None, :], K)[1][0],
        batch=lambda qs: index.search(qs, K)[1],
    )
    res.memory_bytes = len(faiss.serialize_index(index))
    res.memory_how = "length of faiss.serialize_index"
    res.note = f"faiss {faiss.__version__}, level seed fixed by faiss"
    report.add(res)


def _instant_distance_threads(quick: bool) -> list[int]:
    """Its 1-thread build of the full set takes ~5 min here (5-6x hnswlib's), which alone
    would push `make bench` past its ~15 min budget: the full run builds with 2 threads
    only, unless LLMKG_BENCH_ID_THREADS (e.g. "1,2") says otherwise; --quick does both."""
    env = os.environ.get("LLMKG_BENCH_ID_THREADS", "")
    if env:
        return [int(t) for t in env.split(",")]
    return THREADS if quick else [THREADS[-1]]


def test_instant_distance(ann: AnnData, report: Report, quick: bool) -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("instant-distance is measured from Rust, and cargo is not on PATH")
    files = write_raw(ann, REPO / "target" / "bench-data")
    threads = _instant_distance_threads(quick)
    cmd = [
        cargo,
        "run",
        "--release",
        "--quiet",
        "-p",
        "llmkg-core",
        "--example",
        "peer_instant_distance",
        "--",
        "--base",
        str(files["base"]),
        "--queries",
        str(files["queries"]),
        "--gt",
        str(files["gt"]),
        "--dim",
        str(ann.dim),
        "--gt-k",
        str(K),
        "--k",
        str(K),
        "--ef-construction",
        str(EF_CONSTRUCTION),
        "--efs",
        ",".join(map(str, EFS)),
        "--threads",
        ",".join(map(str, threads)),
        "--seed",
        str(SEED),
    ]
    # Native codegen, as hnswlib's own build (-march=native) and faiss's AVX2 dispatch;
    # a target dir of its own, so these flags never invalidate the test builds in target/.
    env = {
        **os.environ,
        "RUSTFLAGS": "-C target-cpu=native",
        "CARGO_TARGET_DIR": str(REPO / "target" / "bench-native"),
    }
    print()
    # stderr (progress) goes to the terminal; stdout is the one JSON result.
    out = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, check=True)
    got = json.loads(out.stdout)
    res = LibResult("instant-distance")
    res.build_seconds = {int(t): s for t, s in got["build_seconds"].items()}
    res.sweep = got["sweep"]
    res.memory_bytes = got["index_bytes"]
    res.memory_how = "length of its bincode serialization"
    if 1 not in threads:
        res.note = "1-thread build skipped on the full set (LLMKG_BENCH_ID_THREADS=1,2 runs it); "
    res.note += (
        f"M {got['m']}; measured in Rust (rust/core/examples/peer_instant_distance.rs, "
        "target-cpu=native), so its loop QPS has no Python call overhead"
    )
    report.add(res)


# --- llmkg ---------------------------------------------------------------------------


def _hnsw_index_class() -> Any:
    import llmkg

    cls = getattr(llmkg, "HnswIndex", None)
    if cls is None:
        pytest.skip(
            "llmkg.HnswIndex is not in this build yet (the index work); "
            "run `make bench` again once it is merged"
        )
    return cls


def _new_llmkg(ann: AnnData, keep_full: bool = True) -> Any:
    return _hnsw_index_class()(
        ann.dim,
        metric="cosine",
        m=M,
        ef_construction=EF_CONSTRUCTION,
        ef_search=100,
        seed=SEED,
        keep_full=keep_full,
    )


def test_llmkg(ann: AnnData, report: Report) -> None:
    _hnsw_index_class()
    res = LibResult("llmkg")
    ids = np.arange(ann.n, dtype=np.uint64)
    for t in THREADS:
        index = _new_llmkg(ann)
        start = perf_counter()
        index.add(ids, ann.base, precision=None, threads=t)
        res.build_seconds[t] = perf_counter() - start
        print(f"\nllmkg: built with {t} thread(s) in {res.build_seconds[t]:.1f} s")
    ef_now = {"ef": 100}

    def set_ef(ef: int) -> None:
        ef_now["ef"] = ef

    res.sweep = run_sweep(
        ann,
        set_ef=set_ef,
        one=lambda q: index.search(q[None, :], k=K, ef=ef_now["ef"])[0][0],
        batch=lambda qs: index.search(qs, k=K, ef=ef_now["ef"])[0],
    )
    res.memory_bytes = int(index.memory_bytes())
    res.memory_how = "HnswIndex.memory_bytes() (precision full, keep_full=True)"
    res.note = f"stats: {index.stats()}; batch search uses llmkg's own threads"
    report.add(res)
    report.precisions.append(
        PrecisionResult(
            "full", True, res.memory_bytes, res.build_seconds[THREADS[-1]], True, res.sweep
        )
    )


@pytest.mark.parametrize(
    ("precision", "keep_full"),
    [("full", False), *[(p, kf) for p in ("q8", "q4", "binary") for kf in (True, False)]],
)
def test_llmkg_precision(ann: AnnData, report: Report, precision: str, keep_full: bool) -> None:
    """Memory and recall@10 per precision; full-precision rescoring needs keep_full.

    q8 codes with rescoring (what the engine runs) are timed as the peers are, one query
    per call and best of REPEATS, with the full rows on the heap and then in a mapped
    file (the engine's way): both join the ratio table. The other precisions are timed by
    one batch pass on llmkg's own threads, for their recall."""
    _hnsw_index_class()
    index = _new_llmkg(ann, keep_full=keep_full)
    ids = np.arange(ann.n, dtype=np.uint64)
    start = perf_counter()
    index.add(ids, ann.base, precision=precision, threads=THREADS[-1])
    build = perf_counter() - start
    mem = int(index.memory_bytes())
    print(f"\nllmkg {precision} keep_full={keep_full}: {mem / 1e6:.1f} MB, built in {build:.1f} s")
    if precision == "q8" and keep_full:
        sweep = _q8_rescored_like_the_peers(ann, report, index, build)
    else:
        sweep = []
        for ef in EFS:
            start = perf_counter()
            found = index.search(ann.queries, k=K, ef=ef, rescore=keep_full)[0]
            qps = ann.queries.shape[0] / (perf_counter() - start)
            sweep.append({"ef": ef, "recall": recall_at_k(found, ann.gt), "batch_qps": qps})
    report.precisions.append(PrecisionResult(precision, keep_full, mem, build, keep_full, sweep))


def _q8_rescored_like_the_peers(
    ann: AnnData, report: Report, index: Any, build: float
) -> list[dict[str, float]]:
    """The loop sweep of a q8 index with keep_full, rows on the heap, then mapped."""
    ef_now = {"ef": 100}

    def set_ef(ef: int) -> None:
        ef_now["ef"] = ef

    def one(q: np.ndarray) -> np.ndarray:
        return index.search(q[None, :], k=K, ef=ef_now["ef"])[0][0]

    def batch(qs: np.ndarray) -> np.ndarray:
        return index.search(qs, k=K, ef=ef_now["ef"])[0]

    sweeps = []
    with tempfile.TemporaryDirectory() as tmp:
        for mapped in (False, True):
            if mapped:
                index.map_full_rows(Path(tmp) / "full-rows.f32")
            name = "llmkg q8+rescore" + (", mapped rows" if mapped else "")
            print(f"\n{name}:")
            res = LibResult(name)
            res.build_seconds = {THREADS[-1]: build}
            res.sweep = run_sweep(ann, set_ef=set_ef, one=one, batch=batch)
            res.memory_bytes = int(index.memory_bytes())
            res.memory_how = "HnswIndex.memory_bytes() (q8, keep_full=True" + (
                "; the mapped full rows are the page cache's)" if mapped else ")"
            )
            res.note = "precision q8, keep_full=True, rescored; batch search uses llmkg's threads"
            report.add(res)
            sweeps.append(res.sweep)
    return sweeps[0]
