"""Fact embedder throughput from Python: one call per fact, and the batch form.

Real facts: the pypi-minilm-dev texts (subject = package name, predicate =
"described_as", object = its one-line summary), or synthetic ones if the set is absent.
"""

from __future__ import annotations

import pytest
from ann_data import data_dir

import llmkg

N = 20_000
Fact = tuple[str, str, str]


def _facts() -> list[Fact]:
    path = data_dir() / "texts.tsv"
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            next(f)  # header: id name summary
            rows = [line.rstrip("\n").split("\t") for _, line in zip(range(N), f, strict=False)]
        return [(r[1], "described_as", r[2]) for r in rows if len(r) >= 3]
    return [(f"package {i}", "described_as", f"a tool number {i} for data") for i in range(N)]


@pytest.fixture(scope="module")
def facts() -> list[Fact]:
    return _facts()


@pytest.mark.parametrize("dim", [384, 768])
def test_embed_fact_one_call_per_fact(benchmark, facts, dim: int) -> None:
    def run() -> None:
        for s, p, o in facts:
            llmkg.embed_fact(s, p, o, dim=dim)

    benchmark.pedantic(run, rounds=3, iterations=1)
    per_s = len(facts) / benchmark.stats.stats.min
    print(f"\nembed_fact, dim {dim}: {per_s:,.0f} facts/s (one call per fact)")


@pytest.mark.parametrize("dim", [384, 768])
def test_embed_facts_batch(benchmark, facts, dim: int) -> None:
    benchmark.pedantic(lambda: llmkg.embed_facts(facts, dim=dim), rounds=3, iterations=1)
    per_s = len(facts) / benchmark.stats.stats.min
    print(f"\nembed_facts, dim {dim}: {per_s:,.0f} facts/s (one batch call)")
