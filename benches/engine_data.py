"""Facts, queries and exact ground truth for bench_engine.py.

Facts come from pypi-minilm-dev (`texts.tsv` + `base.f16.npy`): subject = package name,
predicate = "described_as", object = summary, embedding = its base row. A store larger
than the 60,000 real rows is topped up with *variants*: a base row plus small seeded
Gaussian noise, re-normalized, with object text "<summary> (variant N)" so that every
triple is distinct. Three of every five nodes are real rows at any size (6,000 of 10,000
in quick mode, all 60,000 of 100,000 in the full run), so quick mode runs the variant path
too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ann_data import data_dir

PREDICATE = "described_as"
REAL_SHARE = 0.6  # of the nodes, real base rows; the rest are variants
NOISE_SIGMA = 0.02  # per dimension, on unit vectors: a variant keeps cosine ~0.93 to its row
SEED = 20261127


@dataclass
class Facts:
    subjects: list[str]
    objects: list[str]
    vectors: np.ndarray  # (n, dim) float32, unit rows
    confidence: np.ndarray  # (n,) float64 in [0.5, 1.0)
    n_real: int
    variant_cosine: float  # mean cosine of a variant to the row it was made from

    @property
    def n(self) -> int:
        return len(self.subjects)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def fact(self, i: int) -> dict[str, Any]:
        return {
            "subject": self.subjects[i],
            "predicate": PREDICATE,
            "object": self.objects[i],
            "confidence": float(self.confidence[i]),
            "embedding": self.vectors[i],
        }

    def payload(self, i: int) -> dict[str, Any]:
        return {"subject": self.subjects[i], "predicate": PREDICATE, "object": self.objects[i]}

    def describe(self) -> str:
        variants = self.n - self.n_real
        text = f"{self.n:,} facts = {self.n_real:,} real pypi-minilm-dev rows"
        if variants:
            text += (
                f" + {variants:,} variants (a real row + N(0, {NOISE_SIGMA}^2) noise per"
                f" dimension, re-normalized, mean cosine {self.variant_cosine:.3f} to its row;"
                ' object "<summary> (variant N)")'
            )
        return text


def _texts(n: int) -> tuple[list[str], list[str]]:
    names: list[str] = []
    summaries: list[str] = []
    with (data_dir() / "texts.tsv").open(encoding="utf-8") as f:
        next(f)  # header: id name summary
        for expected, line in zip(range(n), f, strict=False):
            row_id, name, summary = line.rstrip("\n").split("\t")
            # The rows are read by position below: make sure position == id.
            assert int(row_id) == expected, f"texts.tsv out of order at {row_id}"
            names.append(name)
            summaries.append(summary)
    return names, summaries


def make_facts(n_nodes: int) -> Facts:
    base = np.load(data_dir() / "base.f16.npy")
    n_real = min(base.shape[0], round(n_nodes * REAL_SHARE))
    real = base[:n_real].astype(np.float32)
    names, summaries = _texts(n_real)
    subjects, objects = list(names), list(summaries)
    n_var = n_nodes - n_real
    rng = np.random.default_rng(SEED)
    src = np.arange(n_var) % n_real
    noisy = real[src] + rng.normal(0.0, NOISE_SIGMA, (n_var, real.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    for v, s in enumerate(src):
        subjects.append(names[s])
        objects.append(f"{summaries[s]} (variant {v // n_real + 1})")
    cos = float(np.mean(np.sum(noisy * real[src], axis=1))) if n_var else 1.0
    vectors = np.ascontiguousarray(np.concatenate([real, noisy]))
    # Spread over [0.5, 1): the engine picks each node's precision from its confidence
    # (>= 0.8 full, else q8 by default), so the index holds a mix, as it would in service.
    confidence = rng.uniform(0.5, 1.0, n_nodes)
    return Facts(subjects, objects, vectors, confidence, n_real, cos)


def load_queries() -> np.ndarray:
    return np.ascontiguousarray(np.load(data_dir() / "queries.f32.npy").astype(np.float32))


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """(q, k) row numbers of the exact top-k by cosine, best first."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    out = np.empty((q.shape[0], k), dtype=np.int64)
    for start in range(0, q.shape[0], 100):  # 100 x 100,000 scores at a time: 40 MB
        scores = q[start : start + 100] @ unit.T
        part = np.argpartition(-scores, k, axis=1)[:, :k]
        rows = np.take_along_axis(scores, part, axis=1)
        out[start : start + 100] = np.take_along_axis(part, np.argsort(-rows, axis=1), axis=1)
    return out


def recall(found: list[list[int]], truth: np.ndarray, k: int) -> float:
    """Mean share of each query's exact top-k found among its first k results."""
    hits = sum(len(set(f[:k]) & set(t[:k].tolist())) for f, t in zip(found, truth, strict=False))
    return hits / (len(found) * k)
