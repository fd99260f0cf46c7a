"""`make bench-report`: the figures are drawn from saved benchmark results.

The plotting code (benches/figures/) runs on small fixture results
(tests/fixtures/bench-results/, one of each kind) with matplotlib's Agg backend. Without
matplotlib (requirements/dev.txt installs it) these tests skip, except under ``CI``,
where they fail: CI is what notices a benchmark whose result format the figures no
longer read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "bench-results"
PNG = b"\x89PNG\r\n\x1a\n"

if os.environ.get("CI", "").lower() not in ("", "0", "false"):
    import matplotlib  # noqa: F401 (CI fails here rather than skip)
else:
    pytest.importorskip("matplotlib", reason="matplotlib is in requirements/dev.txt")

sys.path.insert(0, str(REPO / "benches"))
from figures import FIGURES, render  # noqa: E402 (benches/ is not a package)
from figures.common import footer  # noqa: E402

EXPECTED = {
    "hnsw.json": ["hnsw-recall-qps.png", "hnsw-build.png", "hnsw-precision.png"],
    "cache.json": ["cache-hit-ratio.png", "cache-throughput.png"],
    "engine.json": ["engine.png"],
    "cluster.json": ["cluster.png"],
    "k6-summary.json": ["k6-latency.png"],
}


def test_every_result_kind_draws_its_figures(tmp_path: Path) -> None:
    outcomes = render(FIXTURES, tmp_path)
    assert {o.result for o in outcomes} == set(FIGURES) == set(EXPECTED)
    for outcome in outcomes:
        assert not outcome.missing, outcome.result
        assert [p.name for p in outcome.written] == EXPECTED[outcome.result]
    drawn = sorted(p.name for p in tmp_path.iterdir())
    assert drawn == sorted(name for names in EXPECTED.values() for name in names)
    for path in tmp_path.iterdir():
        blob = path.read_bytes()
        assert blob.startswith(PNG), path.name
        assert len(blob) > 10_000, f"{path.name} looks empty ({len(blob)} bytes)"


def test_a_missing_result_is_reported_and_the_rest_drawn(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "cluster.json").write_text((FIXTURES / "cluster.json").read_text())
    outcomes = {o.result: o for o in render(results, tmp_path / "out")}
    assert [p.name for p in outcomes["cluster.json"].written] == ["cluster.png"]
    assert all(o.missing and not o.written for n, o in outcomes.items() if n != "cluster.json")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["cluster.png"]


def test_the_footer_says_which_run_it_is() -> None:
    run = {
        "date": "2026-12-04",
        "machine": {"cores": 2, "cpu": "Fixture CPU 9000", "memory_gib": 23.5, "python": "3.11"},
        "command": "LLMKG_BENCH_QUICK=1 pytest benches/bench_hnsw.py",
        "dataset": "pypi-minilm-dev[:10000]",
        "quick": True,
    }
    text = footer(run)
    for part in ("QUICK run", "2026-12-04", "2 cores", "Fixture CPU 9000", "[:10000]"):
        assert part in text
    assert "LLMKG_BENCH_QUICK=1 pytest benches/bench_hnsw.py" in text.replace("\n    ", "")
    assert "full run" in footer({**run, "quick": False})
    assert "not recorded" in footer(None)


def test_the_committed_figures_are_shown_in_the_docs() -> None:
    """Each figure in docs/benchmarks/ is on the Performance page, and its results
    are committed beside the benchmarks, so the figure can be redrawn."""
    figures = sorted(p.name for p in (REPO / "docs" / "benchmarks").glob("*.png"))
    assert figures, "no figure in docs/benchmarks/"
    page = (REPO / "docs" / "performance.md").read_text()
    assert [f for f in figures if f"benchmarks/{f}" not in page] == []
    for result, names in EXPECTED.items():
        if any(n in figures for n in names):
            assert (REPO / "benches" / "results" / result).is_file(), result


def test_the_headline_table_reads_every_result() -> None:
    from targets import markdown, rows

    table = rows(FIXTURES)
    assert not [r.what for r in table if "not saved" in r.what]
    text = markdown(table)
    for what in ("index QPS", "engine search", "allocations/s", "idle resident", "evicting put"):
        assert what in text
    idle = next(r for r in table if r.what.startswith("idle"))
    assert (idle.measured, idle.met) == ("64 MB", True)
    missing = rows(FIXTURES / "no-such-folder")
    assert all(r.met is None for r in missing), "a missing result is said, not guessed"
