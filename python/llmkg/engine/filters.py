"""The id sets behind search filters: live node ids by exact subject, predicate and object,
and each node's confidence, kept in memory so that a filter becomes an id set that the
index applies during its traversal."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from llmkg.engine.facts import FactError, text_field

FIELDS = ("subject", "predicate", "object")


class FactIndex:
    def __init__(self, max_text_length: int) -> None:
        self.max_text_length = max_text_length
        self._lock = threading.Lock()
        self._confidence: dict[int, float] = {}
        self._by_field: dict[str, defaultdict[str, set[int]]] = {
            f: defaultdict(set) for f in FIELDS
        }

    def add(self, node_id: int, s: str, p: str, o: str, confidence: float) -> None:
        with self._lock:
            self._confidence[node_id] = confidence
            for name, value in zip(FIELDS, (s, p, o), strict=True):
                self._by_field[name][value].add(node_id)

    def __len__(self) -> int:
        """Live nodes (every stored node that is not deleted)."""
        return len(self._confidence)

    def set_confidence(self, node_id: int, confidence: float) -> None:
        with self._lock:
            self._confidence[node_id] = confidence

    def remove(self, node_id: int, s: str, p: str, o: str) -> None:
        with self._lock:
            self._confidence.pop(node_id, None)
            for name, value in zip(FIELDS, (s, p, o), strict=True):
                ids = self._by_field[name].get(value)
                if ids is not None:
                    ids.discard(node_id)
                    if not ids:
                        del self._by_field[name][value]

    def contains(self, s: str, p: str, o: str) -> bool:
        """Whether a live node has exactly this (canonical) triple."""
        with self._lock:
            sets: list[set[int]] = []
            for name, value in zip(FIELDS, (s, p, o), strict=True):
                ids = self._by_field[name].get(value)
                if not ids:
                    return False
                sets.append(ids)
            # Walk the smallest set (a subject's nodes, usually), not "every node of type".
            return any(all(i in ids for ids in sets) for i in min(sets, key=len))

    def confidences(self, ids: Iterable[int] | None = None) -> dict[int, float]:
        """The confidence of every live node, or of those of ``ids`` that are live."""
        with self._lock:
            if ids is None:
                return dict(self._confidence)
            return {i: self._confidence[i] for i in ids if i in self._confidence}

    def allowed(self, flt: Mapping[str, Any]) -> np.ndarray | None:
        """The ids a filter allows (``None``: no restriction). ``FactError`` names a bad
        filter field."""
        for key in flt:
            if key not in (*FIELDS, "min_confidence"):
                raise FactError(f"query.filter.{key}", "unknown field")
        values = {
            name: text_field(flt[name], f"query.filter.{name}", self.max_text_length)
            for name in FIELDS
            if flt.get(name) is not None
        }
        floor = flt.get("min_confidence")
        if floor is not None and (
            isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= 1
        ):
            raise FactError("query.filter.min_confidence", "must be a number between 0 and 1")
        allowed: set[int] | None = None
        with self._lock:
            for name, value in values.items():
                ids = self._by_field[name].get(value, set())
                allowed = set(ids) if allowed is None else allowed & ids
            if floor is not None:
                pool = allowed if allowed is not None else self._confidence.keys()
                allowed = {i for i in pool if self._confidence.get(i, -1.0) >= floor}
        if allowed is None:
            return None
        return np.fromiter(allowed, dtype=np.uint64, count=len(allowed))
