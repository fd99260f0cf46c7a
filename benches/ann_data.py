"""The ANN benchmark data set and the arithmetic shared by all the libraries measured.

The data is `shared/data/pypi-minilm-dev` (see its README): 60,000 x 384 base vectors
(float16 on disk), 1,000 float32 queries, exact top-100 neighbours, cosine on unit vectors.
It lives beside the repository (`<repo>/../shared/data/...`), as in CI; set
LLMKG_BENCH_DATA to a directory with the same files to use another copy.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASET = "pypi-minilm-dev"
K = 10
QUICK_N = 10_000


def data_dir() -> Path:
    override = os.environ.get("LLMKG_BENCH_DATA")
    return Path(override) if override else REPO.parent / "shared" / "data" / DATASET


def missing_reason() -> str | None:
    """Why the data set cannot be used, or None if it can."""
    d = data_dir()
    need = ["base.f16.npy", "queries.f32.npy", "gt_ids.i32.npy"]
    absent = [n for n in need if not (d / n).is_file()]
    if absent:
        return (
            f"ANN data set {DATASET} not found: {d} lacks {', '.join(absent)} "
            "(expected at <repo>/../shared/data/; or set LLMKG_BENCH_DATA)"
        )
    return None


@dataclass
class AnnData:
    name: str
    base: np.ndarray  # (n, dim) float32, unit rows, C-contiguous
    queries: np.ndarray  # (q, dim) float32
    gt: np.ndarray  # (q, K) int64: exact top-K base row ids, best first

    @property
    def n(self) -> int:
        return int(self.base.shape[0])

    @property
    def dim(self) -> int:
        return int(self.base.shape[1])


def load(quick: bool) -> AnnData:
    d = data_dir()
    base = np.ascontiguousarray(np.load(d / "base.f16.npy").astype(np.float32))
    queries = np.ascontiguousarray(np.load(d / "queries.f32.npy").astype(np.float32))
    if not quick:
        gt = np.load(d / "gt_ids.i32.npy")[:, :K].astype(np.int64)
        return AnnData(DATASET, base, queries, gt)
    # On a slice the shipped ground truth no longer holds: recompute it exactly, with
    # the same order as the data set's (score descending, ties by smaller id).
    base = np.ascontiguousarray(base[:QUICK_N])
    return AnnData(f"{DATASET}[:{QUICK_N}]", base, queries, exact_top_k(base, queries, K))


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries.astype(np.float64) @ base.astype(np.float64).T
    ids = np.arange(base.shape[0])
    out = np.empty((queries.shape[0], k), dtype=np.int64)
    for i, row in enumerate(scores):
        order = np.lexsort((ids, -row))
        out[i] = order[:k]
    return out


def recall_at_k(found: np.ndarray, gt: np.ndarray) -> float:
    """Mean fraction of each query's true top-k found among its k results."""
    k = gt.shape[1]
    hits = sum(len(set(f[:k].tolist()) & set(g.tolist())) for f, g in zip(found, gt, strict=False))
    return hits / (gt.shape[0] * k)


def qps_at_recall(sweep: list[dict[str, float]], target: float) -> float | None:
    """Queries/s at `target` recall, by linear interpolation over an ef sweep.

    `sweep` holds {"recall", "qps"} points in increasing ef. None if the sweep never
    reaches the target; the fastest point's QPS if even the smallest ef exceeds it (the
    true number is then at least that).
    """
    pts = sorted((p["recall"], p["qps"]) for p in sweep)
    if not pts or pts[-1][0] < target:
        return None
    best = None
    for (r0, q0), (r1, q1) in itertools.pairwise(pts):
        if r0 <= target <= r1:
            q = q0 if r1 == r0 else q0 + (q1 - q0) * (target - r0) / (r1 - r0)
            best = q if best is None else max(best, q)
    # Points already above the target count too (a smaller ef can beat a larger one).
    above = [q for r, q in pts if r >= target]
    return max([*above, *([best] if best is not None else [])])


def write_raw(data: AnnData, directory: Path) -> dict[str, Path]:
    """Little-endian raw files for the Rust peer program (rewritten only when changed)."""
    directory.mkdir(parents=True, exist_ok=True)
    tag = f"{data.n}x{data.dim}"
    files = {
        "base": (directory / f"base-{tag}.f32", data.base.astype("<f4")),
        "queries": (directory / f"queries-{tag}.f32", data.queries.astype("<f4")),
        "gt": (directory / f"gt-{tag}.i32", data.gt.astype("<i4")),
    }
    out = {}
    for key, (path, arr) in files.items():
        blob = np.ascontiguousarray(arr).tobytes()
        if not path.is_file() or path.read_bytes() != blob:
            path.write_bytes(blob)
        out[key] = path
    return out
