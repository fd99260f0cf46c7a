"""The caches compared in `bench_cache.py`, behind one small interface.

Each peer is used through its fastest natural calls: `get` for reads (it must return
None on a miss) and item assignment (or the library's setter) for writes.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Peer:
    name: str
    make: Callable[[int], Any]
    get: Callable[[Any], Callable[[Any], Any]]
    put: Callable[[Any], Callable[[Any, Any], Any]]
    # A lookup that says whether the key hit (theine's get returns a pair).
    hit: Callable[[Any], Callable[[Any], bool]] | None = None


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _getter(c: Any) -> Callable[[Any], Any]:
    return c.get


def _setitem(c: Any) -> Callable[[Any, Any], Any]:
    return c.__setitem__


def peers(include_dict: bool = True) -> list[Peer]:
    import llmkg

    out = [
        Peer(
            "llmkg lru-with-frequency",
            lambda cap: llmkg.ShardedCache(cap),
            _getter,
            _setitem,
        ),
        Peer(
            "llmkg lru",
            lambda cap: llmkg.ShardedCache(cap, policy="lru"),
            _getter,
            _setitem,
        ),
    ]
    if _has("cachebox"):
        import cachebox

        out.append(Peer("cachebox LRUCache", cachebox.LRUCache, _getter, _setitem))
    if _has("lru"):
        import lru

        out.append(Peer("lru-dict LRU", lru.LRU, _getter, _setitem))
    if _has("moka_py"):
        import moka_py

        out.append(Peer("moka-py TinyLFU", moka_py.Moka, _getter, lambda c: c.set))
    if _has("theine"):
        import theine

        out.append(
            Peer(
                "theine W-TinyLFU",
                theine.Cache,
                _getter,
                lambda c: c.set,
                hit=lambda c: lambda k, g=c.get: g(k)[1],
            )
        )
    if _has("cachetools"):
        import cachetools

        out.append(Peer("cachetools LRUCache", cachetools.LRUCache, _getter, _setitem))
        out.append(Peer("cachetools LFUCache", cachetools.LFUCache, _getter, _setitem))
    if include_dict:
        out.append(Peer("dict (unbounded)", lambda cap: {}, _getter, _setitem))
    return out
