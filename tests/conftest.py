"""Shared fixtures: the real-embedding dev set (from ../shared) and small synthetic data.

The session's header names the dev set, or says that it is missing, and its summary
says whether the tests loaded it. Without the set the tests that use it skip, except under
``CI``, where they fail: a CI run must not pass without its recall tests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from pglib import pg_cluster, pg_dsn  # noqa: F401 (fixtures of the PostgreSQL tests)

REPO = Path(__file__).resolve().parents[1]
DEV_DATA = Path(os.environ.get("LLMKG_DEV_DATA", REPO.parent / "shared/data/pypi-minilm-dev"))
SLICE = 20_000


@dataclass(frozen=True)
class DevSlice:
    """The first 20,000 base vectors, the queries, and the exact top-100 over the slice."""

    base: np.ndarray
    queries: np.ndarray
    truth: np.ndarray

    def recall(self, found: np.ndarray, k: int = 10) -> float:
        hits = sum(
            len(set(row[:k].tolist()) & set(t[:k].tolist()))
            for row, t in zip(found, self.truth, strict=False)
        )
        return hits / (k * len(found))


@lru_cache(maxsize=1)
def _dev_slice() -> DevSlice:
    base = np.load(DEV_DATA / "base.f16.npy")[:SLICE].astype(np.float32)
    queries = np.load(DEV_DATA / "queries.f32.npy")
    scores = queries @ base.T
    # Exact ground truth over the slice: ties broken by smaller id, as in the data set.
    truth = np.argsort(-scores, axis=1, kind="stable")[:, :100]
    return DevSlice(base, queries, truth)


DEV_FILES = ("base.f16.npy", "queries.f32.npy")
# What the session's tests loaded of the dev set, reported at its end.
_DEV_LOADED: list[str] = []


def _dev_description() -> str | None:
    """The dev set's path and sizes, or None if it is missing."""
    if not all((DEV_DATA / f).exists() for f in DEV_FILES):
        return None
    base = np.load(DEV_DATA / "base.f16.npy", mmap_mode="r")
    queries = np.load(DEV_DATA / "queries.f32.npy", mmap_mode="r")
    used = min(SLICE, base.shape[0])
    return (
        f"{DEV_DATA}: {base.shape[0]} base vectors of dim {base.shape[1]} "
        f"(the first {used} used), {queries.shape[0]} queries"
    )


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def pytest_report_header() -> str:
    found = _dev_description()
    if found is not None:
        return f"dev data: {found}"
    outcome = "fail (CI is set)" if _in_ci() else "skip"
    return f"dev data: not found at {DEV_DATA}; the tests using it {outcome}"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for loaded in _DEV_LOADED:
        terminalreporter.write_line(f"dev data loaded: {loaded}")


@pytest.fixture(scope="session")
def dev() -> DevSlice:
    if _dev_description() is None:
        missing = f"dev data set not found at {DEV_DATA} (set LLMKG_DEV_DATA)"
        if _in_ci():
            pytest.fail(f"{missing}; CI runs the recall tests", pytrace=False)
        pytest.skip(missing)
    data = _dev_slice()
    _DEV_LOADED.append(
        f"{DEV_DATA}: {len(data.base)} base vectors of dim {data.base.shape[1]}, "
        f"{len(data.queries)} queries"
    )
    return data


def clustered(n: int, dim: int, seed: int) -> np.ndarray:
    """Random vectors around 32 centres: neighbourhoods that a graph has to find."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(32, dim)).astype(np.float32) * 3
    return (centres[rng.integers(0, 32, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def exact_top(base: np.ndarray, queries: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    if metric == "cosine":
        b = base / np.linalg.norm(base, axis=1, keepdims=True)
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        scores = q @ b.T
    elif metric == "ip":
        scores = queries @ base.T
    else:
        scores = -((queries[:, None, :] - base[None, :, :]) ** 2).sum(-1)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


# Every test gets one of three markers, by its module, so that `make test-fast` can leave
# out the slow kind: `unit` (the library in-process: index, caches, embedder, config),
# `system` (real processes: servers, the power-loss filesystem, kill -9, the deployment
# tools, the wheel build), and `integration` (the rest: the engine and the stores, with
# PostgreSQL where they need it).
UNIT_MODULES = {
    "test_bench_report",
    "test_cache",
    "test_cache_threads",
    "test_config",
    "test_core_logging",
    "test_docs",
    "test_embed",
    "test_filters",
    "test_hnsw_api",
    "test_hnsw_recall",
    "test_hnsw_threads",
    "test_openapi_docs",
    "test_package",
    "test_partition_breaker",
    "test_partition_proto",
    "test_progress",
}
SYSTEM_MODULES = {
    "test_disk_full",
    "test_engine_durability",
    "test_follow_postgres",
    "test_lazyfs",
    "test_power_loss",
    "test_store_migrate",
    "test_wheel",
}


def kind_of(module: str, path: Path) -> str:
    if module in UNIT_MODULES:
        return "unit"
    if module in SYSTEM_MODULES or module.startswith("test_server_") or "ops" in path.parts:
        return "system"
    return "integration"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        kind = kind_of(item.path.stem, item.path)
        item.add_marker(getattr(pytest.mark, kind))
