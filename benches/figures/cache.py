"""The cache benchmark (bench_cache.py, results/cache.json): hit ratio per trace and
throughput per operation, llmkg's ShardedCache against the Python caching libraries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures.common import finish, grouped_bars, new_figure


def hit_ratio(data: dict[str, Any], out: Path) -> Path:
    table: dict[str, dict[str, float]] = data["hit_ratio"]
    traces = list(next(iter(table.values())))
    fig, (ax,) = new_figure(width=10.0, height=4.8)
    series = {name: [100 * r.get(t, 0.0) for t in traces] for name, r in table.items()}
    grouped_bars(ax, traces, series, "{:.1f}")
    ax.set_ylabel("hit ratio, % (higher is better)")
    ax.legend(fontsize=7, ncol=2)
    sizes = data.get("sizes", {}).get("hit_ratio", {})
    title = (
        f"Cache hit ratio per trace, capacity {sizes.get('capacity', '?'):,},"
        f" {sizes.get('accesses', 0):,} accesses"
    )
    return finish(fig, title, data.get("run"), out / "cache-hit-ratio.png")


def throughput(data: dict[str, Any], out: Path) -> Path:
    rows: list[dict[str, Any]] = data["throughput_mops"]
    threads = sorted({r["threads"] for r in rows})
    ops = [k for k in rows[0] if k not in ("library", "threads")]
    fig, axes = new_figure(ncols=len(threads), width=6.0 * len(threads), height=4.8)
    for ax, t in zip(axes, threads, strict=True):
        series = {r["library"]: [r.get(op) for op in ops] for r in rows if r["threads"] == t}
        grouped_bars(ax, ops, series, "{:.1f}")
        ax.set_title(f"{t} thread{'s' * (t > 1)}", fontsize=9)
        ax.set_ylabel("M operations per CPU-second (higher is better)")
        ax.tick_params(axis="x", labelsize=8)
    axes[0].legend(fontsize=7)
    s = data.get("sizes", {}).get("throughput", {})
    title = (
        f"Cache throughput from Python per operation (capacity {s.get('capacity', 0):,},"
        f" Zipf(1.0) over {s.get('keys', 0):,} keys; best of 3)"
    )
    return finish(fig, title, data.get("run"), out / "cache-throughput.png")


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    return [hit_ratio(data, out), throughput(data, out)]
