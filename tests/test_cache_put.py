"""ShardedCache.put and ShardedCache.__setitem__: hand-written METH_FASTCALL entry points
(not PyO3's wrappers), which must take their arguments and drop what they evict exactly
as the methods they replace did."""

from __future__ import annotations

import inspect
import re
import sys
import weakref
from collections.abc import Callable

import pytest

from llmkg import ShardedCache, TieredCache


class Value:
    """An object that a weak reference can watch."""


def test_put_takes_its_arguments_as_a_python_method_does() -> None:
    c = ShardedCache(10, shards=1, max_memory=1000)
    c.put(1, "one")
    c.put(key=2, value="two")
    c.put(3, value="three", ttl=60)
    c.put(4, b"four", size=7)
    c.put(5, "five", ttl=None, size=None)
    assert [c[k] for k in range(1, 6)] == ["one", "two", "three", b"four", "five"]
    # `size` overrides the weight, which is otherwise len() of a str or bytes value.
    assert c.stats()["memory_bytes"] == 3 + 3 + 5 + 7 + 4
    ShardedCache.put(c, 6, "six")
    assert c[6] == "six"
    assert str(inspect.signature(ShardedCache.put)) == (
        "(self, /, key, value, *, ttl=None, size=None)"
    )
    assert ShardedCache.put.__doc__ == ShardedCache.put.__doc__.strip() != ""
    for call, error, message in [
        (lambda: c.put(1), TypeError, "put() missing 1 required positional argument: 'value'"),
        (
            lambda: c.put(),
            TypeError,
            "put() missing 2 required positional arguments: 'key' and 'value'",
        ),
        (lambda: c.put(1, 2, 3), TypeError, "put() takes 2 positional arguments but 3 were given"),
        (lambda: c.put(1, 2, key=1), TypeError, "put() got multiple values for argument 'key'"),
        (lambda: c.put(1, 2, weight=3), TypeError, "unexpected keyword argument 'weight'"),
        (lambda: c.put(1, 2, ttl="soon"), TypeError, "put() argument 'ttl'"),
        (lambda: c.put(1, 2, size=1.5), TypeError, "put() argument 'size'"),
        (lambda: c.put(1, 2, size=2**70), OverflowError, "put() argument 'size'"),
        (lambda: c.put(1, 2, size=-1), ValueError, "size must be between 0 and"),
        (lambda: c.put(1, 2, ttl=0), ValueError, "ttl must be > 0"),
        (lambda: c.put([1], 2), TypeError, "cache keys must be str, bytes or int, not list"),
        (lambda: ShardedCache.put(object(), 1, 2), TypeError, "doesn't apply to a 'object'"),
    ]:
        with pytest.raises(error, match=re.escape(message)):
            call()
    assert c[1] == "one", "a failed put leaves the entry alone"


def test_setitem_is_positional_only_and_item_assignment_still_works() -> None:
    c = ShardedCache(10, shards=1)
    c.__setitem__("a", 1)
    c["b"] = 2
    ShardedCache.__setitem__(c, "c", 3)
    assert (c["a"], c["b"], c["c"]) == (1, 2, 3)
    assert str(inspect.signature(ShardedCache.__setitem__)) == "(self, key, value, /)"
    # Deleting an item goes through the same type slot as assigning one.
    del c["a"]
    assert "a" not in c
    with pytest.raises(KeyError):
        del c["a"]
    for call, message in [
        (lambda: c.__setitem__("a"), "__setitem__ expected 2 arguments, got 1"),
        (lambda: c.__setitem__("a", 1, 2), "__setitem__ expected 2 arguments, got 3"),
        (lambda: c.__setitem__(key="a", value=1), "takes no keyword arguments"),
        (lambda: c.__setitem__(1.5, 1), "cache keys must be str, bytes or int, not float"),
    ]:
        with pytest.raises(TypeError, match=re.escape(message)):
            call()
    # TieredCache keeps its own methods.
    t = TieredCache(ShardedCache(100), ShardedCache(1000))
    t["x"] = 1
    t.put("y", 2)
    assert (t.get("x"), t.get("y")) == (1, 2)


WRITES: list[Callable[[ShardedCache, object, object], None]] = [
    lambda c, k, v: c.put(k, v),
    lambda c, k, v: c.put(k, v, ttl=60),
    lambda c, k, v: c.__setitem__(k, v),
]


@pytest.mark.parametrize("write", WRITES, ids=["put", "put-ttl", "setitem"])
@pytest.mark.parametrize("policy", ["lru", "lru-with-frequency"])
def test_a_write_frees_what_it_evicts_replaces_or_rejects_at_once(
    write: Callable[[ShardedCache, object, object], None], policy: str
) -> None:
    # Outside PyO3's trampoline PyO3 would defer the decrement of a dropped `Py` to its
    # next call; each write must drop what it takes out of the cache itself, right away.
    c = ShardedCache(2, shards=1, policy=policy, max_memory=1000)
    v = Value()
    gone = weakref.ref(v)
    write(c, "replaced", v)
    del v
    write(c, "replaced", 0)
    assert gone() is None, "the value a write replaces is freed by that write"

    for k in range(3):
        v = Value()
        gone = weakref.ref(v)
        write(c, f"key-{k}-" + "x" * 20, v)
        del v
    # Capacity 2 and three new keys: the last write evicted (or, with the frequency
    # filter, turned away) one of them; every earlier value is held or freed now.
    write(c, "evicting", 0)
    write(c, "evicting-2", 0)
    assert gone() is None, "the value a write evicts is freed by that write"

    v = Value()
    gone = weakref.ref(v)
    c.put("too-heavy", v, size=5000)
    del v
    assert gone() is None, "a value too heavy to store is freed at once"

    key, value = "k" * 30, object()
    before = sys.getrefcount(key), sys.getrefcount(value)
    for i in range(200):
        write(c, key, value)
        write(c, i, value)
    c.clear()
    assert (sys.getrefcount(key), sys.getrefcount(value)) == before
