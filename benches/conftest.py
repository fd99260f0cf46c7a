"""Benchmark plumbing: collect bench_*.py, the --quick switch, the data set, the report
(printed at the end, saved to benches/results/hnsw.json).

`make bench` runs `pytest benches`; pytest only collects test_*.py by itself, and the
benchmarks are named bench_*.py so that the test suite never picks them up.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from ann_data import AnnData, load, missing_reason
from ann_report import Report
from record import quick_env, run_info, save

_REPORT = Report()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--quick",
        action="store_true",
        help="first 10,000 base vectors only (same as LLMKG_BENCH_QUICK=1)",
    )


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Module | None:
    # A file named on the command line is collected by pytest itself already.
    if parent.session.isinitpath(file_path):
        return None
    if file_path.suffix == ".py" and file_path.name.startswith("bench_"):
        return pytest.Module.from_parent(parent, path=file_path)
    return None


@pytest.fixture(scope="session")
def quick(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--quick")) or quick_env()


@pytest.fixture(scope="session")
def ann(quick: bool) -> AnnData:
    why = missing_reason()
    if why:
        pytest.skip(why)
    data = load(quick)
    _REPORT.dataset, _REPORT.n = data.name, data.n
    return data


@pytest.fixture(scope="session")
def report() -> Report:
    return _REPORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = _REPORT.lines()
    if not lines:
        return
    terminalreporter.write_line("")
    for line in lines:
        terminalreporter.write_line(line)
    config = terminalreporter.config
    quick = bool(config.getoption("--quick")) or quick_env()
    argv = ["pytest", *config.invocation_params.args]
    path = save("hnsw", asdict(_REPORT), run_info(argv, f"{_REPORT.dataset}, 384 dims", quick))
    terminalreporter.write_line(f"(raw numbers: {path})")
