"""EngineConfig: its defaults are the config schema's, except the differences it declares;
it is validated once, when made, with errors that name the field; and the names of
precisions, cache policies and metrics come from the Rust core."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llmkg import _core
from llmkg.config import Settings, engine_config, schema
from llmkg.engine import AllocationEngine, EngineConfig, EngineConfigError
from llmkg.engine.config import EMBEDDED_DIFFERENCES

STUB = Path(__file__).resolve().parents[1] / "python" / "llmkg" / "_core.pyi"


def test_engine_defaults_are_the_schema_defaults_field_by_field() -> None:
    # What the server makes of the default config, against what Python gets by default:
    # equal in every field but the differences EngineConfig declares, and those differ.
    server, embedded = engine_config(Settings()), EngineConfig()
    differing = set()
    for field in dataclasses.fields(EngineConfig):
        ours, theirs = getattr(embedded, field.name), getattr(server, field.name)
        if ours != theirs:
            differing.add(field.name)
        elif field.name not in EMBEDDED_DIFFERENCES:
            assert type(ours) is type(theirs), field.name  # Duration, ByteSize: plain numbers
    assert differing == set(EMBEDDED_DIFFERENCES)


def test_the_embedded_differences_and_a_few_production_values() -> None:
    c = EngineConfig()
    assert c.data_directory == Path("data") and c.backup_directory is None
    hnsw = Settings().scalability.hnsw
    assert (c.m, c.ef_construction, c.max_level) == (hnsw.max_connections, 400, 5)
    assert (c.cache_l1_shards, c.prefetch_distance, c.cache_warmup_on_startup) == (1, 50, True)
    assert (c.importance_threshold, c.sync_interval, c.max_wal_size) == (0.7, 30.0, 2**30)


def test_an_engine_made_in_python_builds_the_production_graph(tmp_path: Path) -> None:
    with AllocationEngine(EngineConfig(data_directory=tmp_path, dim=8)) as engine:
        stats = engine.index.stats()
    assert (stats["m"], stats["ef_construction"]) == (32, 400)


@pytest.mark.parametrize(
    ("settings", "field", "words"),
    [
        ({"m": 1}, "m", "Expected `int` >= 2, got 1"),
        ({"ef_search": 0}, "ef_search", ">= 1, got 0"),
        ({"dim": "768"}, "dim", "Expected `int`, got '768'"),
        ({"max_level": 16}, "max_level", "<= 15"),
        ({"enable_hnsw": 1}, "enable_hnsw", "Expected `bool`, got 1"),
        ({"write_timeout": 0}, "write_timeout", "> 0"),
        ({"cache_l1_ttl": 0}, "cache_l1_ttl", "> 0"),
        ({"cache_l2_shards": 5000}, "cache_l2_shards", "<= 4096"),
        ({"memory_pressure_threshold": 0}, "memory_pressure_threshold", "> 0.0"),
        ({"durability": "sometimes"}, "durability", "one of 'fsync', 'interval'"),
        ({"store_backend": "mysql"}, "store_backend", "one of 'sqlite', 'postgresql'"),
        ({"store_backend": "postgresql"}, "postgres_dsn", "is needed"),
        ({"metric": "manhattan"}, "metric", "one of 'cosine', 'ip', 'l2'"),
        ({"eviction_policy": "lfu"}, "eviction_policy", "one of 'lru', 'lru-with-frequency'"),
        ({"default_precision": "q5"}, "default_precision", "one of 'full', 'q8', 'q4', 'binary'"),
        ({"precision_bands": (0.5, 1.5, 0.1)}, "precision_bands[1]", "<= 1.0"),
        ({"precision_bands": (0.1, 0.2, 0.3)}, "precision_bands", "descending"),
        (
            {"precision_levels": {"high": "full", "medium": "q9", "low": "q4", "very_low": "q4"}},
            "precision_levels.medium",
            "got 'q9'",
        ),
        ({"precision_levels": {"high": "full"}}, "precision_levels", "high, medium, low"),
        ({"similarity_threshold": 1.5}, "similarity_threshold", "-1 to 1 for cosine"),
    ],
)
def test_a_bad_setting_is_refused_when_made_naming_the_field(
    settings: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(EngineConfigError) as err:
        EngineConfig(**settings)
    assert err.value.field == field
    assert str(err.value).startswith(f"EngineConfig.{field}: ") and words in str(err.value)
    assert isinstance(err.value, ValueError)


def test_a_dsn_is_never_shown_in_an_error() -> None:
    with pytest.raises(EngineConfigError) as err:
        EngineConfig(postgres_dsn=b"password=hunter2")  # type: ignore[arg-type]
    assert err.value.field == "postgres_dsn" and "hunter2" not in str(err.value)


def test_values_are_taken_as_the_plain_types() -> None:
    c = EngineConfig(
        dim=np.int64(16),  # type: ignore[arg-type]
        similarity_threshold=np.float64(0.5),
        precision_bands=[0.9, 0.5, 0.2],  # type: ignore[arg-type]
    )
    assert type(c.dim) is int and type(c.similarity_threshold) is float
    assert c.precision_bands == (0.9, 0.5, 0.2)


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
