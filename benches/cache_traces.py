"""Access traces for the cache benchmarks, and the reference policies they are scored by.

Every trace is generated from a seed (printed by the benchmark) so a run can be replayed.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict

import numpy as np


def zipf(n_keys: int, s: float, length: int, rng: np.random.Generator) -> list[int]:
    """`length` draws of Zipf(`s`) over `n_keys` keys, ranks scrambled into key ids."""
    weights = 1.0 / np.arange(1, n_keys + 1, dtype=np.float64) ** s
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    ranks = np.searchsorted(cdf, rng.random(length), side="right")
    ranks = np.minimum(ranks, n_keys - 1)
    keys = rng.permutation(n_keys)
    return keys[ranks].tolist()


def zipf_with_scans(
    n_keys: int,
    s: float,
    length: int,
    every: int,
    scan: int,
    rng: np.random.Generator,
) -> list[int]:
    """Zipf traffic with a scan of `scan` one-time keys after every `every` accesses."""
    base = zipf(n_keys, s, length, rng)
    out: list[int] = []
    next_scan_key = 10 * n_keys
    pos = 0
    while len(out) < length:
        take = every
        out.extend(base[pos : pos + take])
        pos += take
        out.extend(range(next_scan_key, next_scan_key + scan))
        next_scan_key += scan
    return out[:length]


def loop(n_keys: int, length: int) -> list[int]:
    return [i % n_keys for i in range(length)]


def lru_hits(capacity: int, trace: list[int]) -> int:
    """Hits of an exact LRU (the reference any correct LRU must match)."""
    od: OrderedDict[int, None] = OrderedDict()
    hits = 0
    move = od.move_to_end
    for k in trace:
        if k in od:
            hits += 1
            move(k)
        else:
            od[k] = None
            if len(od) > capacity:
                od.popitem(last=False)
    return hits


def belady_hits(capacity: int, trace: list[int]) -> int:
    """Hits of Belady's MIN (evict the key used farthest in the future; may bypass)."""
    n = len(trace)
    next_use = [0] * n
    last: dict[int, int] = {}
    for i in range(n - 1, -1, -1):
        k = trace[i]
        next_use[i] = last.get(k, n + i)
        last[k] = i
    resident: dict[int, int] = {}  # key -> its next use
    heap: list[tuple[int, int]] = []  # (-next use, key), lazily invalidated
    hits = 0
    for i, k in enumerate(trace):
        nu = next_use[i]
        if k in resident:
            hits += 1
            resident[k] = nu
            heapq.heappush(heap, (-nu, k))
            continue
        if len(resident) < capacity:
            resident[k] = nu
            heapq.heappush(heap, (-nu, k))
            continue
        while True:
            far, victim = heap[0]
            if resident.get(victim) == -far:
                break
            heapq.heappop(heap)
        if -far > nu:
            heapq.heappop(heap)
            del resident[victim]
            resident[k] = nu
            heapq.heappush(heap, (-nu, k))
    return hits
