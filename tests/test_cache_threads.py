"""Many Python threads on one cache: no errors, no deadlock, counters that add up."""

from __future__ import annotations

import random
import threading

import pytest

from llmkg import ManualClock, ShardedCache, TieredCache

THREADS = 4
OPS = 40_000


def _hammer(get, put, pop, seed: int, gets: list[int], errors: list[BaseException]) -> None:
    rng = random.Random(seed)
    n = 0
    try:
        for _ in range(OPS):
            k = rng.randrange(3000)
            key = k if k % 3 else f"s{k}"
            r = rng.random()
            if r < 0.6:
                n += 1
                v = get(key)
                if v is not None and v != (key, "v"):
                    raise AssertionError(f"{key!r} read {v!r}")
            elif r < 0.9:
                put(key, (key, "v"))
            else:
                pop(key)
    except BaseException as e:  # reported by the main thread
        errors.append(e)
    gets[seed] = n


def _run(get, put, pop) -> int:
    gets = [0] * THREADS
    errors: list[BaseException] = []
    ts = [
        threading.Thread(target=_hammer, args=(get, put, pop, i, gets, errors))
        for i in range(THREADS)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in ts), "a thread is stuck: deadlock"
    assert not errors, errors
    return sum(gets)


@pytest.mark.parametrize("policy", ["lru", "lru-with-frequency"])
@pytest.mark.parametrize("ttl", [None, 0.001])
def test_hammer_one_cache(policy: str, ttl: float | None) -> None:
    clock = ManualClock()
    c = ShardedCache(1000, shards=8, policy=policy, ttl=ttl, max_memory=50_000, clock=clock)

    def put(key: object, value: object) -> None:
        # Time passes with the writes: with the ttl, each entry expires 10 writes (of any
        # thread) after its own, while the threads still read and write.
        clock.advance(0.0001)
        c.put(key, value)

    gets = _run(c.get, put, c.pop)
    s = c.stats()
    assert s["hits"] + s["misses"] == gets
    assert len(c) == s["entries"] <= 1000
    assert s["memory_bytes"] <= 50_000
    if ttl is not None:
        assert s["expirations"] > 0
        clock.advance(ttl)
        assert len(c) == 0


def test_hammer_tiered() -> None:
    l1 = ShardedCache(100, shards=2)
    l2 = ShardedCache(1000, shards=8)
    t = TieredCache(l1, l2)
    gets = _run(t.get, t.put, t.pop)
    s = t.stats()
    assert s["hits"] + s["misses"] == gets
    assert len(l1) <= 100 and len(l2) <= 1000
