"""The names of precisions, cache policies and metrics come from the Rust core."""

from __future__ import annotations

import ast
import typing
from pathlib import Path

from llmkg import _core
from llmkg.config import schema

STUB = Path(__file__).resolve().parents[1] / "python" / "llmkg" / "_core.pyi"


def _stub_literal(name: str) -> tuple[str, ...]:
    """The strings of the Literal type alias ``name`` in _core.pyi."""
    for node in ast.parse(STUB.read_text()).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == name:
            assert isinstance(node.value, ast.Subscript)
            items = node.value.slice
            elts = items.elts if isinstance(items, ast.Tuple) else [items]
            return tuple(typing.cast("ast.Constant", e).value for e in elts)
    raise AssertionError(f"{name} is not in {STUB}")


def test_the_names_come_from_the_core_and_its_stub_agrees() -> None:
    assert _core.PRECISIONS == ("full", "q8", "q4", "binary")  # most to least memory
    assert _core.CACHE_POLICIES == ("lru", "lru-with-frequency")
    assert _core.METRICS == ("cosine", "ip", "l2")
    assert _stub_literal("_PrecisionName") == _core.PRECISIONS
    assert _stub_literal("_CachePolicyName") == _core.CACHE_POLICIES
    assert _stub_literal("_MetricName") == _core.METRICS
    assert typing.get_args(schema.Precision) == _core.PRECISIONS
    assert typing.get_args(schema.CachePolicy) == _core.CACHE_POLICIES
    assert typing.get_args(schema.Metric) == _core.METRICS
