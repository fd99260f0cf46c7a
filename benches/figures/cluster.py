"""The cluster benchmark (bench_cluster.py, results/cluster.json): acknowledged
allocations/s through the replicas against their anchors, and search latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures.common import finish, grouped_bars, new_figure


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    fig, (alloc, search) = new_figure(ncols=2, width=11.0, height=4.6)
    replicas = data.get("replicas", 3)
    names = [
        "bare psycopg\n(sync standby)",
        f"{replicas} replicas\n(PostgreSQL)",
        "embedded\n(SQLite, fsync)",
    ]
    rates = [
        data["bare_psycopg_commits_per_s"],
        data["cluster_allocations_per_s"],
        data["embedded_allocations_per_s"],
    ]
    bars = alloc.bar(range(3), rates, color=["0.6", "#d62728", "#ff9896"])
    alloc.bar_label(bars, [f"{v:,.0f}" for v in rates], fontsize=8, padding=1)
    alloc.set_xticks(range(3), names, fontsize=8)
    alloc.set_ylabel("acknowledged per second (higher is better)")
    alloc.set_title(f"writes from {data.get('clients', 8)} clients", fontsize=9)
    alloc.grid(axis="y", alpha=0.3)
    ms = data["search_ms"]
    series = {f"through {name}": [ms[name]["p50"], ms[name]["p95"]] for name in ms}
    grouped_bars(search, ["p50", "p95"], series, "{:.2f}")
    search.set_ylabel("ms per search over HTTP (lower is better)")
    search.set_title("search k=10, the two interleaved", fontsize=9)
    search.legend(fontsize=8)
    title = f"Local cluster: {replicas} replicas on PostgreSQL against the embedded server"
    return [finish(fig, title, data.get("run"), out / "cluster.png")]
