"""Where the benchmarks save their results, and what each result file says of its run.

Every result file is JSON with a ``run`` block: the date, the machine (cores, CPU model,
memory), the command, the data set and whether it was a quick run. ``make bench-report``
draws the figures of docs/benchmarks/ from these files, so a figure can always say what
it shows. The files go to ``benches/results/`` (``LLMKG_BENCH_RESULTS`` to change),
where the ones the committed figures came from are kept.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    return Path(os.environ.get("LLMKG_BENCH_RESULTS", REPO / "benches" / "results"))


def quick_env() -> bool:
    return os.environ.get("LLMKG_BENCH_QUICK", "") not in ("", "0")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.machine()}",
    }


def command(argv: list[str]) -> str:
    """The command line as one would type it again, with the environment that shapes
    the run in front."""
    env = [
        f"{k}={shlex.quote(os.environ[k])}"
        for k in ("LLMKG_BENCH_QUICK", "LLMKG_BENCH_SEED", "LLMKG_BENCH_ID_THREADS")
        if os.environ.get(k)
    ]
    return " ".join([*env, *(shlex.quote(a) for a in argv)])


def run_info(argv: list[str], dataset: str, quick: bool) -> dict[str, Any]:
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": command(argv),
        "dataset": dataset,
        "quick": quick,
    }


def save(name: str, payload: dict[str, Any], run: dict[str, Any], path: Path | None = None) -> Path:
    """Write ``{"run": run, **payload}`` to ``path`` (default: results_dir()/name.json)."""
    path = path or results_dir() / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": run, **payload}, indent=1, default=str) + "\n")
    return path


def stamp(path: Path, argv: list[str], dataset: str, quick: bool) -> None:
    """Add the ``run`` block to a result file another program wrote (k6's summary)."""
    data = json.loads(path.read_text())
    data["run"] = run_info(argv, dataset, quick)
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="add the run's details to a result file")
    parser.add_argument("path", type=Path)
    parser.add_argument("--command", required=True, help="the command that made it")
    parser.add_argument("--dataset", required=True, help="what it ran on")
    parser.add_argument("--quick", action="store_true", help="a shortened run")
    args = parser.parse_args()
    stamp(args.path, shlex.split(args.command), args.dataset, args.quick)
