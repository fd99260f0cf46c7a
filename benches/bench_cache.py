"""llmkg.ShardedCache against the Python caching libraries, measured side by side.

Run: ``pytest benches/bench_cache.py -s`` (or ``python benches/bench_cache.py``) after
``make develop`` and ``pip install -r requirements/bench.txt``; nothing is installed here.
Peers that are not installed are skipped. ``LLMKG_BENCH_SEED`` replays a run's traces;
``LLMKG_BENCH_QUICK=1`` shrinks every size tenfold (a smoke run, not for the numbers).

Three tables:

1. throughput from Python, in million operations per CPU-second (``time.process_time``
   of the whole process, so a second thread is charged for), with the ratio to
   cachebox: get-hit, get-miss, put-with-eviction, and a 90/10 get/put mix on a
   Zipf(1.0) stream over 1,000,000 keys at capacity 100,000; 1 and 2 threads;
2. hit ratio at capacity 10,000 over 2,000,000 accesses (get, then put on a miss) on
   Zipf(0.9), Zipf(0.9) with a 50,000-key scan in every 200,000 accesses, and a loop
   over 12,000 keys; with an exact LRU and Belady's optimum as references;
3. resident memory per 100,000 entries at 1,000,000 entries (each peer in a fresh
   process; keys are ints held by the benchmark and every value is the same object,
   so the figure is the cache's own overhead).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cache_peers import Peer, peers
from cache_traces import (
    belady_hits,
    loop,
    lru_hits,
    zipf,
    zipf_with_scans,
)

QUICK = os.environ.get("LLMKG_BENCH_QUICK") == "1"
SCALE = 10 if QUICK else 1
SEED = int(os.environ.get("LLMKG_BENCH_SEED", str(int.from_bytes(os.urandom(4), "little"))))

TP_KEYS = 1_000_000 // SCALE
TP_CAPACITY = 100_000 // SCALE
TP_OPS = 1_000_000 // SCALE
HR_CAPACITY = 10_000
HR_LENGTH = 2_000_000 // SCALE
MEM_ENTRIES = 1_000_000 // SCALE
BASELINE = "cachebox LRUCache"


def _cpu(fn: Callable[[], None]) -> float:
    gc.collect()
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _threads(n: int, work: Callable[[int, int], None], total: int) -> float:
    """CPU seconds for `n` threads sharing `total` operations of one cache."""
    if n == 1:
        return _cpu(lambda: work(0, total))
    bounds = [(i * total // n, (i + 1) * total // n) for i in range(n)]

    def run() -> None:
        ts = [threading.Thread(target=work, args=b) for b in bounds]
        for t in ts:
            t.start()
        for t in ts:
            t.join()

    return _cpu(run)


def _fill(put: Callable[[int, int], object], keys: list[int]) -> None:
    for k in keys:
        put(k, k)


def throughput(p: Peer, stream: list[int], flags: list[bool], threads: int) -> dict[str, float]:
    """M ops per CPU-second of each operation for one peer."""
    out: dict[str, float] = {}
    n = TP_OPS

    # get-hit: the most frequent keys, at half the capacity so that every policy keeps
    # them all; the reads follow the Zipf stream restricted to them.
    c = p.make(TP_CAPACITY)
    get, put = p.get(c), p.put(c)
    resident = list(dict.fromkeys(stream))[: TP_CAPACITY // 2]
    _fill(put, resident)
    rs = set(resident)
    hits = [k for k in stream if k in rs]
    hits = (hits * (n // max(len(hits), 1) + 1))[:n]

    def get_loop(keys: list[int]) -> Callable[[int, int], None]:
        def work(lo: int, hi: int) -> None:
            for k in keys[lo:hi]:
                get(k)

        return work

    out["get-hit"] = n / _threads(threads, get_loop(hits), n) / 1e6
    if p.hit is None:
        missed = sum(get(k) is None for k in hits[:1000])
        if missed:
            print(f"  warning: {p.name} missed {missed}/1000 of its get-hit keys")

    misses = list(range(50 * TP_KEYS, 50 * TP_KEYS + n))
    out["get-miss"] = n / _threads(threads, get_loop(misses), n) / 1e6
    del c, get, put

    c = p.make(TP_CAPACITY)
    put = p.put(c)
    _fill(put, list(range(60 * TP_KEYS, 60 * TP_KEYS + TP_CAPACITY)))
    fresh = list(range(70 * TP_KEYS, 70 * TP_KEYS + n))

    def put_work(lo: int, hi: int) -> None:
        for k in fresh[lo:hi]:
            put(k, k)

    out["put-evict"] = n / _threads(threads, put_work, n) / 1e6
    del c, put

    c = p.make(TP_CAPACITY)
    get, put = p.get(c), p.put(c)
    for k in stream[:n]:  # warm: read-through over the stream
        if get(k) is None:
            put(k, k)
    ops = stream[n : 2 * n]

    def mixed(lo: int, hi: int) -> None:
        for k, w in zip(ops[lo:hi], flags[lo:hi]):
            if w:
                put(k, k)
            else:
                get(k)

    out["mixed 90/10"] = n / _threads(threads, mixed, n) / 1e6
    return out


def hit_ratio(p: Peer, trace: list[int]) -> float:
    c = p.make(HR_CAPACITY)
    put = p.put(c)
    hits = 0
    if p.hit is not None:
        hit = p.hit(c)
        for k in trace:
            if hit(k):
                hits += 1
            else:
                put(k, k)
    else:
        get = p.get(c)
        for k in trace:
            if get(k) is None:
                put(k, k)
            else:
                hits += 1
    return hits / len(trace)


_MEMORY_SCRIPT = """
import gc, json, sys
import psutil
sys.path.insert(0, {here!r})
from cache_peers import peers
n = {n}
p = next(p for p in peers() if p.name == {name!r})
keys = list(range(10**9, 10**9 + n))
value = object()
proc = psutil.Process()
gc.collect()
before = proc.memory_info().rss
c = p.make(n)
put = p.put(c)
for k in keys:
    put(k, value)
gc.collect()
after = proc.memory_info().rss
held = len(c) if hasattr(c, "__len__") else n
if hasattr(c, "count"):
    held = c.count()
print(json.dumps({{"bytes": after - before, "held": held}}))
"""


def memory(p: Peer) -> tuple[float, int] | None:
    """Bytes per entry held, and entries held, measured in a fresh process."""
    script = _MEMORY_SCRIPT.format(
        here=str(Path(__file__).resolve().parent), n=MEM_ENTRIES, name=p.name
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(f"  {p.name}: memory run failed: {r.stderr.strip().splitlines()[-1:]}")
        return None
    d = json.loads(r.stdout.strip().splitlines()[-1])
    held = max(int(d["held"]), 1)
    return d["bytes"] / held, held


def _table(title: str, cols: list[str], rows: list[tuple[str, list[str]]]) -> None:
    print(f"\n{title}")
    w0 = max(len(r[0]) for r in rows) + 2
    print("".ljust(w0) + "".join(c.rjust(16) for c in cols))
    for name, cells in rows:
        print(name.ljust(w0) + "".join(c.rjust(16) for c in cells))


def run_throughput(ps: list[Peer]) -> dict[tuple[str, int], dict[str, float]]:
    rng = np.random.default_rng(SEED)
    stream = zipf(TP_KEYS, 1.0, 2 * TP_OPS, rng)
    flags = (rng.random(TP_OPS) < 0.1).tolist()
    results: dict[tuple[str, int], dict[str, float]] = {}
    for threads in (1, 2):
        for p in ps:
            if p.name.startswith("cachetools") and threads == 2:
                continue  # pure Python, as slow with two threads; saves a minute
            results[(p.name, threads)] = throughput(p, stream, flags, threads)
    ops = ["get-hit", "get-miss", "put-evict", "mixed 90/10"]
    for threads in (1, 2):
        base = results.get((BASELINE, threads))
        rows = []
        for p in ps:
            r = results.get((p.name, threads))
            if r is None:
                continue
            cells = []
            for op in ops:
                ratio = f" ({r[op] / base[op]:.2f}x)" if base else ""
                cells.append(f"{r[op]:.2f}{ratio}")
            rows.append((p.name, cells))
        _table(
            f"Throughput, M ops per CPU-second, {threads} thread(s); (ratio to {BASELINE})",
            ops,
            rows,
        )
    return results


def run_hit_ratios(ps: list[Peer]) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(SEED + 1)
    traces = {
        "zipf(0.9)": zipf(1_000_000, 0.9, HR_LENGTH, rng),
        "zipf+scans": zipf_with_scans(1_000_000, 0.9, HR_LENGTH, 200_000, 50_000, rng),
        "loop 12k": loop(12_000, HR_LENGTH),
    }
    table: dict[str, dict[str, float]] = {}
    for p in ps:
        if p.name.startswith("dict"):
            continue
        table[p.name] = {t: hit_ratio(p, tr) for t, tr in traces.items()}
    table["exact LRU (reference)"] = {
        t: lru_hits(HR_CAPACITY, tr) / len(tr) for t, tr in traces.items()
    }
    table["Belady optimum"] = {
        t: belady_hits(HR_CAPACITY, tr) / len(tr) for t, tr in traces.items()
    }
    rows = [(name, [f"{100 * v:.2f}%" for v in r.values()]) for name, r in table.items()]
    _table(f"Hit ratio, capacity {HR_CAPACITY}, {HR_LENGTH} accesses", list(traces), rows)
    ours = table["llmkg lru-with-frequency"]
    peers_only = {n: r for n, r in table.items() if not n.startswith(("llmkg", "exact", "Belady"))}
    for t in traces:
        best_name, best = max(((n, r[t]) for n, r in peers_only.items()), key=lambda x: x[1])
        print(
            f"  {t}: llmkg {100 * ours[t]:.2f}% vs best peer {best_name} {100 * best:.2f}%"
            f" ({100 * (ours[t] - best):+.2f} points)"
        )
    return table


def run_memory(ps: list[Peer]) -> dict[str, float]:
    out: dict[str, float] = {}
    rows = []
    for p in ps:
        m = memory(p)
        if m is None:
            continue
        per_entry, held = m
        out[p.name] = per_entry
        rows.append((p.name, [f"{per_entry:.0f}", f"{per_entry * 100_000 / 2**20:.1f}", str(held)]))
    _table(
        f"Memory at {MEM_ENTRIES} entries (fresh process, RSS delta)",
        ["bytes/entry", "MiB per 100k", "entries held"],
        rows,
    )
    return out


def main() -> None:
    print(f"\nllmkg cache benchmark: seed {SEED} (LLMKG_BENCH_SEED={SEED} replays it)")
    ps = peers()
    print("peers:", ", ".join(p.name for p in ps))
    t0 = time.time()
    run_hit_ratios(ps)
    run_throughput(ps)
    run_memory(ps)
    print(f"\nbenchmark wall time {time.time() - t0:.0f} s")


def test_cache_benchmark() -> None:
    main()


if __name__ == "__main__":
    main()
