"""Draw the benchmark figures (docs/benchmarks/) from the saved results (benches/results/),
and the headline table of the targets (docs/benchmarks/targets.md, benches/targets.py).

    python benches/report.py                 # what `make bench-report` runs
    python benches/report.py --run           # first run the benchmarks whose result is missing
    python benches/report.py --results DIR --out DIR

With ``--run`` (``make bench-report RUN=1``), a benchmark whose result file is missing is
run first, as `make bench` would (``LLMKG_BENCH_QUICK=1`` makes those runs quick); the k6
load test and the cluster benchmark start servers of their own on loopback. Needs
matplotlib (requirements/bench.txt).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from figures import FIGURES, render
from record import REPO, results_dir, stamp
from targets import markdown, rows

TITLE = "# Headline table\n\nWritten by `make bench-report` (benches/targets.py).\n\n"

BIN = Path(sys.executable).parent


def commands(results: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """How each result file is made: the command and its extra environment."""
    py = sys.executable
    k6_summary = str(results / "k6-summary.json")
    return {
        "hnsw.json": ([py, "-m", "pytest", "benches/bench_hnsw.py", "-s", "-q"], {}),
        "cache.json": ([py, "benches/bench_cache.py"], {}),
        "engine.json": ([py, "-m", "pytest", "benches/bench_engine.py", "-s", "-q"], {}),
        "idle.json": ([py, "benches/idle_memory.py"], {}),
        "cluster.json": (
            [py, "benches/bench_cluster.py", "--json", str(results / "cluster.json")],
            {},
        ),
        "k6-summary.json": (
            ["scripts/loadtest-local.sh"],
            {
                "K6_SUMMARY": k6_summary,
                "LLMKG_SERVER": str(BIN / "llmkg-server"),
                "K6": str(BIN / "k6"),
            },
        ),
    }


def run_missing(results: Path, only: list[str] | None) -> None:
    for name, (argv, extra) in commands(results).items():
        if (results / name).is_file() or (only is not None and name not in only):
            continue
        print(f"{name}: not saved yet, running {' '.join(argv)}", flush=True)
        env = {**os.environ, "LLMKG_BENCH_RESULTS": str(results), **extra}
        done = subprocess.run(argv, cwd=REPO, env=env)
        if done.returncode != 0:
            # A benchmark that fails still leaves the other figures to draw.
            print(f"{name}: the run failed (exit {done.returncode})", file=sys.stderr)
            continue
        if name == "k6-summary.json" and (results / name).is_file():
            profile = os.environ.get("PROFILE", "short")
            stamp(
                results / name,
                ["make", "loadtest", f"PROFILE={profile}"],
                "k6 mix of allocate and search, embedded defaults",
                quick=profile == "short",
            )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=results_dir(), help="the saved results")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks", help="figures")
    p.add_argument("--run", action="store_true", help="run the benchmarks not saved yet")
    p.add_argument("--only", nargs="+", choices=list(FIGURES), help="these results only")
    args = p.parse_args(argv)
    if args.run:
        run_missing(args.results, args.only)
    for outcome in render(args.results, args.out, args.only):
        if outcome.missing:
            print(f"{outcome.result}: no saved result in {args.results} (RUN=1 runs it)")
        for path in outcome.written:
            print(f"{outcome.result}: wrote {path}")
    if args.only is None:
        table = args.out / "targets.md"
        table.write_text(TITLE + markdown(rows(args.results)))
        print(f"headline table: wrote {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
