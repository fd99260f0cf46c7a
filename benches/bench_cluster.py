"""The local cluster's throughput and latency, against its anchors in the same run:

- a bare psycopg writer: 8 threads, one INSERT per commit, on the same primary with the
  same synchronous standby: what the database alone acknowledges per second;
- acknowledged allocations per second through 3 replicas (``--replicas``) from 8 clients
  (HTTP), and from 8 clients to one embedded server (SQLite, fsync);
- search latency through a replica against the embedded server, queries interleaved.

    PYTHONPATH=python python benches/bench_cluster.py [--seconds 10] [--searches 500] [--json PATH]

Facts and queries are the real 384-dim embeddings of ../shared/data/pypi-minilm-dev when
present (random unit vectors otherwise). The PostgreSQL servers run with the machine's
defaults (fsync and synchronous_commit on); everything shares the machine's cores. The
summary's last line is the numbers as JSON; ``--json`` saves them, with the run's machine
and command, for ``make bench-report``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from record import run_info, save
from serverlib import Server

from llmkg.cluster import down, up

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared/data/pypi-minilm-dev"
DIM = 384
CLIENTS = 8


def vectors(n: int, queries: int) -> tuple[np.ndarray, np.ndarray]:
    if (DATA / "base.f16.npy").exists():
        base = np.load(DATA / "base.f16.npy", mmap_mode="r")[:n].astype(np.float32)
        return base, np.load(DATA / "queries.f32.npy")[:queries]
    rng = np.random.default_rng(0)
    both = rng.normal(size=(n + queries, DIM)).astype(np.float32)
    both /= np.linalg.norm(both, axis=1, keepdims=True)
    return both[:n], both[n:]


def fact(i: int, v: np.ndarray) -> dict[str, Any]:
    return {
        "subject": f"package {i}",
        "predicate": "described_as",
        "object": f"summary {i}",
        "confidence": 0.8,
        "embedding": v.tolist(),
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3


def timed_threads(seconds: float, work: Callable[[int, Callable[[], bool]], int]) -> float:
    """Run ``work(thread, running)`` in CLIENTS threads for ``seconds``; the operations per
    second they report done in all."""
    done = [0] * CLIENTS
    stop_at = time.monotonic() + seconds

    def running() -> bool:
        return time.monotonic() < stop_at

    def run(t: int) -> None:
        done[t] = work(t, running)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(CLIENTS)]
    started = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(done) / (time.monotonic() - started)


def bare_commits(dsn: str, seconds: float) -> float:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_anchor (id bigserial PRIMARY KEY, payload text)")

    def work(t: int, running: Callable[[], bool]) -> int:
        n = 0
        with psycopg.connect(dsn, autocommit=True) as conn:
            while running():
                conn.execute("INSERT INTO bench_anchor (payload) VALUES (%s)", (f"w{t}-{n}",))
                n += 1
        return n

    rate = timed_threads(seconds, work)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_anchor")
    return rate


def allocations(urls: list[str], base: np.ndarray, seconds: float) -> tuple[float, int]:
    """Allocations acknowledged per second: client t takes facts t, t + 8, ... and sends
    them to the servers in turn."""
    acked = [0] * CLIENTS

    def work(t: int, running: Callable[[], bool]) -> int:
        clients = [httpx.Client(base_url=u, timeout=60) for u in urls]
        n = 0
        try:
            for i in range(t, len(base), CLIENTS):
                if not running():
                    break
                r = clients[i % len(clients)].post(
                    "/api/v1/allocate", json={"fact": fact(i, base[i])}
                )
                r.raise_for_status()
                n += 1
        finally:
            for c in clients:
                c.close()
        acked[t] = n
        return n

    rate = timed_threads(seconds, work)
    return rate, sum(acked)


def fill(url: str, base: np.ndarray, upto: int) -> None:
    """Allocate facts 0..upto-1 (those not there yet), in batches."""
    with httpx.Client(base_url=url, timeout=120) as client:
        for start in range(0, upto, 200):
            batch = [fact(i, base[i]) for i in range(start, min(upto, start + 200))]
            client.post("/api/v1/allocate/batch", json={"facts": batch}).raise_for_status()


def searches(replica: str, embedded: str, queries: np.ndarray, n: int) -> dict[str, list[float]]:
    """Search latencies of each, k=10, the two interleaved (the first 20 warm up)."""
    timings: dict[str, list[float]] = {"replica": [], "embedded": []}
    with httpx.Client(timeout=30) as client:
        for j in range(2 * n + 20):
            which = "replica" if j % 2 == 0 else "embedded"
            url = replica if which == "replica" else embedded
            body = {"query": {"embedding": queries[(j // 2) % len(queries)].tolist(), "k": 10}}
            started = time.perf_counter()
            client.post(url + "/api/v1/search", json=body).raise_for_status()
            if j >= 20:
                timings[which].append(time.perf_counter() - started)
    return timings


def recall(url: str, base: np.ndarray, queries: np.ndarray, k: int = 10) -> float:
    """recall@k of the server's searches against the exact top k of the facts it holds
    (cosine), told apart by their subjects."""
    unit = base / np.linalg.norm(base, axis=1, keepdims=True)
    found = 0
    with httpx.Client(base_url=url, timeout=30) as client:
        for q in queries:
            exact = set(np.argsort(-(unit @ (q / np.linalg.norm(q))), kind="stable")[:k].tolist())
            body = {"query": {"embedding": q.tolist(), "k": k}}
            hits = client.post("/api/v1/search", json=body).json()["results"]
            found += len(exact & {int(h["fact"]["subject"].split()[1]) for h in hits})
    return found / (k * len(queries))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="of each throughput run")
    p.add_argument("--searches", type=int, default=500, help="searches of each server")
    p.add_argument("--facts", type=int, default=20_000, help="facts available to allocate")
    p.add_argument(
        "--replicas",
        type=int,
        help="servers of the cluster (default 3); partitioned: of each partition (default 2)",
    )
    p.add_argument("--partitions", type=int, default=1, help="split the graph (default 1)")
    p.add_argument("--nodes", type=int, help="partitioned: servers (default 2 x --replicas)")
    p.add_argument("--json", type=Path, help="save the numbers and the run's details here")
    args = p.parse_args()
    base, queries = vectors(args.facts, 200)
    quiet = {"LLMKG__LOGGING__LEVEL": "warning", "LLMKG__SERVER__DRAIN_DELAY": "0s"}
    root = Path(tempfile.mkdtemp(prefix="llmkg-bench-cluster-"))
    root.chmod(0o755)
    if args.replicas is None:
        args.replicas = 2 if args.partitions > 1 else 3
    spec = up(
        root / "c",
        replicas=args.replicas,
        standby=True,
        dim=DIM,
        environ=quiet,
        partitions=args.partitions,
        nodes=args.nodes,
    )
    embedded = Server(root / "embedded", quiet, dim=DIM).start()
    try:
        urls = [n["url"] for n in spec["nodes"]]
        anchor = bare_commits(spec["postgres"]["dsn"], args.seconds)
        cluster_rate, cluster_n = allocations(urls, base, args.seconds)
        embedded_rate, embedded_n = allocations([embedded.url], base, args.seconds)
        # The same facts on both before the searches.
        upto = max(cluster_n, embedded_n)
        fill(urls[0], base, upto)
        fill(embedded.url, base, upto)
        timings = searches(urls[-1], embedded.url, queries, args.searches)
        recalls = {
            "cluster": recall(urls[-1], base[:upto], queries),
            "embedded": recall(embedded.url, base[:upto], queries),
        }
    finally:
        embedded.stop()
        down(root / "c", clean=True)
        shutil.rmtree(root)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "facts": upto,
        "dim": DIM,
        "replicas": args.replicas,
        "partitions": args.partitions,
        "nodes": len(spec["nodes"]),
        "recall_at_10": {name: round(r, 4) for name, r in recalls.items()},
        "clients": CLIENTS,
        "seconds": args.seconds,
        "bare_psycopg_commits_per_s": round(anchor, 1),
        "cluster_allocations_per_s": round(cluster_rate, 1),
        "embedded_allocations_per_s": round(embedded_rate, 1),
        "search_ms": {
            name: {"p50": round(pct(t, 50), 3), "p95": round(pct(t, 95), 3)}
            for name, t in timings.items()
        },
    }
    r, e = result["search_ms"]["replica"], result["search_ms"]["embedded"]  # type: ignore[index]
    print(f"{upto} facts of {DIM} dims; {CLIENTS} clients; {args.seconds:g} s per run")
    print(f"  bare psycopg, sync standby: {anchor:8.1f} commits/s")
    print(
        f"  {len(urls)} servers (PostgreSQL):     {cluster_rate:8.1f} allocations/s "
        f"({cluster_rate / anchor:.2f}x the bare writer)"
    )
    print(
        f"  embedded (SQLite, fsync):   {embedded_rate:8.1f} allocations/s "
        f"({cluster_rate / embedded_rate:.2f}x: cluster / embedded)"
    )
    print(
        f"  search k=10, replica:  p50 {r['p50']:.2f} ms  p95 {r['p95']:.2f} ms "
        f"({r['p50'] / e['p50']:.2f}x the embedded p50)"
    )
    print(f"  search k=10, embedded: p50 {e['p50']:.2f} ms  p95 {e['p95']:.2f} ms")
    print(
        f"  recall@10: cluster {recalls['cluster']:.4f}, embedded {recalls['embedded']:.4f}"
        + (f" ({args.partitions} partitions merged)" if args.partitions > 1 else "")
    )
    print(json.dumps(result))
    if args.json:
        real = (DATA / "base.f16.npy").exists()
        dataset = f"{upto:,} facts of {DIM} dims, " + (
            "pypi-minilm-dev embeddings" if real else "random unit vectors"
        )
        defaults = p.parse_args([])
        quick = args.seconds < defaults.seconds or args.searches < defaults.searches
        run = run_info(["python", *sys.argv], dataset, quick)
        print(f"(saved: {save('cluster', result, run, args.json)})")


if __name__ == "__main__":
    main()
