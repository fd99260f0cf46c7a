"""Shared fixtures: the real-embedding dev set (from ../shared) and small synthetic data."""

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


@pytest.fixture(scope="session")
def dev() -> DevSlice:
    if not (DEV_DATA / "base.f16.npy").exists():
        pytest.skip(f"dev data set not found at {DEV_DATA} (set LLMKG_DEV_DATA)")
    return _dev_slice()


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
