"""llmkg.ShardedCache and llmkg.TieredCache: the Python API, keys, bounds, policies, TTL."""

from __future__ import annotations

import ctypes
import gc
import inspect
import random
import re
import sys
import weakref
from collections import OrderedDict

import pytest

import llmkg
from llmkg import ManualClock, ShardedCache, TieredCache

POLICIES = ["lru", "lru-with-frequency"]
STAT_KEYS = {
    "hits",
    "misses",
    "hit_rate",
    "evictions",
    "expirations",
    "rejections",
    "entries",
    "memory_bytes",
}


def test_exported_from_the_package() -> None:
    assert "ShardedCache" in llmkg.__all__
    assert "TieredCache" in llmkg.__all__


@pytest.mark.parametrize("policy", POLICIES)
def test_mapping_api(policy: str) -> None:
    c = ShardedCache(100, policy=policy)
    c.put("a", 1)
    c["b"] = 2
    assert c.get("a") == 1
    assert c["b"] == 2
    assert "a" in c and "zz" not in c
    assert c.get("zz") is None
    assert c.get("zz", 7) == 7
    with pytest.raises(KeyError) as e:
        c["zz"]
    assert e.value.args == ("zz",)
    assert c.pop("a") == 1
    assert c.pop("a", "gone") == "gone"
    assert c.pop("a") is None
    del c["b"]
    with pytest.raises(KeyError):
        del c["b"]
    assert len(c) == 0
    c.put_many({"x": 1, "y": 2})
    c.put_many([("z", 3)])
    c.put_many(iter([("w", 4)]))
    c.put_many([["v", 5]])
    assert len(c) == 5
    assert c.get_many(["x", "y", "nope", "z", "v"]) == {"x": 1, "y": 2, "z": 3, "v": 5}
    c.clear()
    assert len(c) == 0
    assert c.get("x") is None
    s = c.stats()
    assert set(s) == STAT_KEYS
    assert s["entries"] == 0


def test_values_are_the_objects_stored_and_overwrites_win() -> None:
    c = ShardedCache(10)
    obj = object()
    c[1] = obj
    assert c[1] is obj
    c[1] = "new"
    assert c[1] == "new"
    assert len(c) == 1


def test_key_types_follow_dict_equality() -> None:
    c = ShardedCache(100)
    c["k"] = "str"
    c[b"k"] = "bytes"
    c[5] = "int"
    c[2**100] = "big"
    c[-(2**70)] = "negative big"
    assert c["k"] == "str" and c[b"k"] == "bytes" and c[5] == "int"
    assert c[2**100] == "big" and c[-(2**70)] == "negative big"
    # As in a dict: True == 1, and equal values of different objects are one key.
    c[True] = "bool"
    assert c[1] == "bool"
    assert c["".join(["k"])] == "str"
    assert c[bytes(bytearray(b"k"))] == "bytes"
    assert c.get(int("1" * 40)) is None
    c[int("1" * 40)] = "fresh"
    assert c[int("1" * 40)] == "fresh"

    class S(str):
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            return True

    # A subclass is stored by its contents, never by its overridden hash or equality.
    c[S("sub")] = "subclass"
    assert c["sub"] == "subclass"
    assert c.get(S("other")) is None


@pytest.mark.parametrize("bad", [1.5, None, ("a",), ["a"], object()])
def test_other_key_types_are_a_type_error_naming_the_type(bad: object) -> None:
    c = ShardedCache(10)
    with pytest.raises(TypeError, match=type(bad).__name__):
        c[bad] = 1  # type: ignore[index]
    with pytest.raises(TypeError, match=type(bad).__name__):
        c.get(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": -3}, "capacity"),
        ({"capacity": 10, "shards": 0}, "shards"),
        ({"capacity": 10, "policy": "lfu"}, "policy"),
        ({"capacity": 10, "ttl": 0}, "ttl"),
        ({"capacity": 10, "ttl": -1.0}, "ttl"),
        ({"capacity": 10, "ttl": float("nan")}, "ttl"),
        ({"capacity": 10, "max_memory": 0}, "max_memory"),
    ],
)
def test_bad_settings_are_value_errors_naming_the_argument(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ShardedCache(**kwargs)


def test_put_many_rejects_items_that_are_not_pairs() -> None:
    c = ShardedCache(10)
    with pytest.raises(TypeError, match="pairs"):
        c.put_many([("a", 1, "extra")])
    with pytest.raises(TypeError, match="pairs"):
        c.put_many(["ab"])


def test_bad_entry_options_are_value_errors() -> None:
    c = ShardedCache(10)
    with pytest.raises(ValueError, match="size"):
        c.put("a", 1, size=-1)
    with pytest.raises(ValueError, match="ttl"):
        c.put("a", 1, ttl=0)
    assert "a" not in c


def test_properties_and_repr() -> None:
    c = ShardedCache(1000, shards=4, ttl=2.5, max_memory=10_000, policy="lru")
    assert (c.capacity, c.shards, c.ttl, c.max_memory, c.policy) == (1000, 4, 2.5, 10_000, "lru")
    assert "ShardedCache(capacity=1000" in repr(c)
    # Never more shards than entries: each must hold at least one.
    assert ShardedCache(3, shards=16).shards == 3


@pytest.mark.parametrize("policy", POLICIES)
def test_capacity_and_memory_are_hard_bounds(policy: str) -> None:
    c = ShardedCache(500, max_memory=20_000, policy=policy)
    rng = random.Random(7)
    for i in range(20_000):
        k = rng.randrange(5_000)
        if c.get(k) is None:
            c.put(k, i, size=rng.randrange(1, 120))
        if i % 997 == 0:
            s = c.stats()
            assert s["entries"] <= 500 and s["memory_bytes"] <= 20_000
    s = c.stats()
    assert len(c) == s["entries"] <= 500
    assert s["memory_bytes"] <= 20_000
    assert s["evictions"] + s["rejections"] > 0, "the test must actually overflow the cache"


def test_default_weights_are_documented_sizes() -> None:
    c = ShardedCache(100, shards=1)
    c["b"] = b"x" * 100
    c["s"] = "y" * 50
    c["o"] = object()
    c.put("n", 1, size=7)
    assert c.stats()["memory_bytes"] == 100 + 50 + 64 + 7


def test_an_entry_heavier_than_its_share_is_rejected() -> None:
    c = ShardedCache(10, shards=1, max_memory=100)
    c.put("a", "old", size=10)
    c.put("a", "too big", size=101)
    assert c.get("a") is None, "a rejected write must not leave the old value readable"
    assert c.stats()["rejections"] == 1


@pytest.mark.parametrize("shards", [1, 16])
def test_lru_policy_is_exactly_lru(shards: int) -> None:
    seed = 1234
    rng = random.Random(seed)
    trace = [int(rng.paretovariate(1.1)) % 3000 for _ in range(60_000)]
    c = ShardedCache(500, shards=shards, policy="lru")
    ref: OrderedDict[int, None] = OrderedDict()
    hits = ref_hits = 0
    for k in trace:
        if c.get(k) is None:
            c[k] = k
        else:
            hits += 1
        if k in ref:
            ref_hits += 1
            ref.move_to_end(k)
        else:
            ref[k] = None
            if len(ref) > 500:
                ref.popitem(last=False)
    assert hits == ref_hits, f"seed {seed}"
    assert c.stats()["hits"] == hits
    assert len(c) == len(ref)
    c.put_many((k, k) for k in range(10**6, 10**6 + 600))
    assert len(c) == 500, "the shards share the whole capacity"


def _hit_ratio(c: ShardedCache, trace: list[int]) -> float:
    hits = 0
    for k in trace:
        if c.get(k) is None:
            c[k] = k
        else:
            hits += 1
    return hits / len(trace)


def test_frequency_policy_keeps_a_loop_larger_than_the_cache() -> None:
    trace = [i % 1200 for i in range(24_000)]
    assert _hit_ratio(ShardedCache(1000, shards=4, policy="lru"), trace) == 0.0
    assert _hit_ratio(ShardedCache(1000, shards=4), trace) > 0.75


def test_frequency_policy_keeps_the_hot_set_through_a_scan() -> None:
    c = ShardedCache(1000, shards=4)
    hot = list(range(500))
    for _ in range(5):
        _hit_ratio(c, hot)
    _hit_ratio(c, list(range(10**6, 10**6 + 50_000)))
    assert sum(k in c for k in hot) > 450
    lru = ShardedCache(1000, shards=4, policy="lru")
    for _ in range(5):
        _hit_ratio(lru, hot)
    _hit_ratio(lru, list(range(10**6, 10**6 + 50_000)))
    assert sum(k in lru for k in hot) == 0


def test_ttl_expires_entries() -> None:
    # One shard: the eleven entries fit whatever shards the process's hash key picks.
    clock = ManualClock()
    c = ShardedCache(100, shards=1, ttl=0.25, clock=clock)
    for k in range(10):
        c[k] = k
    c.put("long", 1, ttl=60)
    clock.advance(0.125)
    assert c[0] == 0 and len(c) == 11, "alive until the ttl has passed"
    clock.advance(0.125)
    assert c.get(0) is None
    assert 1 not in c
    with pytest.raises(KeyError):
        c[2]
    assert c.pop(3) is None
    assert len(c) == 1, "expired entries are reclaimed, not counted"
    s = c.stats()
    assert s["expirations"] == 10
    assert s["entries"] == 1
    assert c["long"] == 1


def test_per_entry_ttl_without_a_default() -> None:
    clock = ManualClock()
    c = ShardedCache(100, clock=clock)
    c.put("short", 1, ttl=0.05)
    c.put("forever", 2)
    c.put_many({"batch": 3}, ttl=0.05)
    clock.advance(0.025)
    assert c.get("short") == 1 and c.get("batch") == 3
    clock.advance(0.025)
    assert c.get("short") is None and c.get("batch") is None
    clock.advance(3600)
    assert c.get("forever") == 2


def test_expired_entries_are_swept_by_writes() -> None:
    clock = ManualClock()
    c = ShardedCache(10_000, shards=1, ttl=0.02, clock=clock)

    class Value:
        pass

    values = [Value() for _ in range(200)]
    refs = [weakref.ref(v) for v in values]
    for k, v in enumerate(values):
        c[k] = v
    del values, v
    clock.advance(0.02)
    for k in range(1000, 1400):
        c.put(k, k, ttl=60)
    # No read touched the first 200, and `len` or `stats()` would reclaim them all
    # themselves: the values already freed are what the writes' amortised sweep took.
    freed = sum(r() is None for r in refs)
    assert freed >= 150, f"the writes' sweep freed only {freed} of 200"
    assert c.stats()["expirations"] == 200


def test_a_manual_clock_moves_only_when_advanced() -> None:
    clock = ManualClock()
    assert clock.elapsed == 0.0
    c = ShardedCache(10, ttl=1.0, clock=clock)
    c["k"] = "v"
    clock.advance(0)
    clock.advance(0.5)
    assert clock.elapsed == 0.5 and c["k"] == "v"
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds"):
            clock.advance(bad)
    assert clock.elapsed == 0.5 and repr(clock) == "ManualClock(elapsed=0.5)"
    clock.advance(0.5)
    assert "k" not in c


def test_tiered_cache_promotes_l2_hits() -> None:
    l1 = ShardedCache(4, shards=1, policy="lru")
    l2 = ShardedCache(1000, shards=4, policy="lru")
    t = TieredCache(l1, l2)
    assert t.l1 is l1 and t.l2 is l2
    for k in range(20):
        t[k] = str(k)
    assert len(l1) == 4 and len(l2) == 20
    assert 0 not in l1
    assert t[0] == "0"
    assert 0 in l1, "an L2 hit is copied into L1"
    assert t.get(0) == "0"
    assert t.get(999) is None and t.get(999, "d") == "d"
    with pytest.raises(KeyError):
        t[999]
    s = t.stats()
    assert (s["hits"], s["misses"]) == (2, 3)
    assert s["l1"]["hits"] == 1 and s["l2"]["hits"] == 1
    assert set(s["l1"]) == STAT_KEYS
    assert t.pop(0) == "0"
    assert 0 not in l1 and 0 not in l2 and 0 not in t
    t.put("w", 1, size=3)
    assert "w" in l1 and "w" in l2
    t.clear()
    assert len(l1) == len(l2) == 0
    with pytest.raises(ValueError, match="different"):
        TieredCache(l1, l1)


def test_tiered_promotion_keeps_the_l2_expiry() -> None:
    clock = ManualClock()
    l1 = ShardedCache(10, shards=1, ttl=60, clock=clock)
    l2 = ShardedCache(10, shards=1, clock=clock)
    t = TieredCache(l1, l2)
    l2.put("k", "v", ttl=0.25)
    clock.advance(0.125)
    assert t["k"] == "v" and "k" in l1
    clock.advance(0.125)
    assert "k" not in l1, "the promoted copy must not outlive the original"
    assert t.get("k") is None


def test_tiers_must_share_their_clock() -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="same clock"):
        TieredCache(ShardedCache(10, clock=clock), ShardedCache(10))
    with pytest.raises(ValueError, match="same clock"):
        TieredCache(ShardedCache(10, clock=clock), ShardedCache(10, clock=ManualClock()))
    TieredCache(ShardedCache(10, clock=clock), ShardedCache(10, clock=clock))


def test_a_value_whose_finalizer_uses_the_cache_does_not_deadlock() -> None:
    c = ShardedCache(2, shards=1, policy="lru")

    class Reentrant:
        def __del__(self) -> None:
            c.get("probe")
            c["from-del"] = 1

    for k in range(10):
        c[k] = Reentrant()
    c.clear()
    gc.collect()
    assert c.stats()["evictions"] >= 8


def test_no_reference_leaks() -> None:
    value = object()
    key = "k" * 20
    c = ShardedCache(50, shards=2)
    before_v, before_k = sys.getrefcount(value), sys.getrefcount(key)
    for i in range(1000):
        c.put(key if i % 2 else i, value)
        c.get(key)
        c.get_many([key, 1])
    c.clear()
    assert sys.getrefcount(value) == before_v
    assert sys.getrefcount(key) == before_k


def test_get_takes_its_arguments_as_a_python_method_does() -> None:
    # `ShardedCache.get` is a hand-written METH_FASTCALL entry point, not PyO3's wrapper.
    c = ShardedCache(10)
    c[1] = "one"
    assert c.get(1) == "one" and c.get(key=1) == "one"
    assert c.get(2, "d") == "d" and c.get(2, default="d") == "d"
    assert c.get(default="d", key=2) == "d"
    assert ShardedCache.get(c, 1) == "one"
    assert str(inspect.signature(ShardedCache.get)) == "(self, /, key, default=None)"
    assert ShardedCache.get.__doc__ == ShardedCache.get.__doc__.strip() != ""
    for call, message in [
        (lambda: c.get(), "missing 1 required positional argument: 'key'"),
        (lambda: c.get(1, 2, 3), "takes from 1 to 2 positional arguments but 3 were given"),
        (lambda: c.get(1, key=1), "multiple values for argument 'key'"),
        (lambda: c.get(1, fallback=2), "unexpected keyword argument 'fallback'"),
        (lambda: c.get([1]), "cache keys must be str, bytes or int, not list"),
        (lambda: ShardedCache.get(object(), 1), "doesn't apply to a 'object' object"),
    ]:
        with pytest.raises(TypeError, match=re.escape(message)):
            call()


def test_get_releases_what_it_drops_at_once() -> None:
    # Outside PyO3's trampoline PyO3 would defer the decrement of a dropped `Py` to its
    # next call; `get` must drop keys and expired values itself, right away.
    c = ShardedCache(10, shards=1)
    key, big, value = "k" * 20, 2**70, object()
    c[key] = value
    c[big] = value
    before = sys.getrefcount(key), sys.getrefcount(big), sys.getrefcount(value)
    for _ in range(100):
        c.get(key)
        c.get(big)
        c.get("missing", key)
    assert (sys.getrefcount(key), sys.getrefcount(big), sys.getrefcount(value)) == before

    class Value:
        pass

    v = Value()
    gone = weakref.ref(v)
    clock = ManualClock()
    c = ShardedCache(10, shards=1, clock=clock)
    c.put("short", v, ttl=0.01)
    del v
    clock.advance(0.01)
    assert c.get("short") is None
    assert gone() is None, "the read that finds an entry expired frees its value"


def test_get_called_with_no_arguments_from_c() -> None:
    # PyObject_CallNoArgs passes a NULL argument array to a METH_FASTCALL method.
    c = ShardedCache(10)
    call_no_args = ctypes.pythonapi.PyObject_CallNoArgs
    call_no_args.restype = ctypes.py_object
    call_no_args.argtypes = [ctypes.py_object]
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        call_no_args(c.get)
