"""The HNSW benchmark (bench_hnsw.py, results/hnsw.json): recall against queries/s per
library, build time, and llmkg's memory and recall per precision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures.common import MARKERS, colour, finish, grouped_bars, new_figure


def recall_qps(data: dict[str, Any], out: Path) -> Path:
    """ann-benchmarks' plot: recall@10 across, queries/s up (log), one point per ef."""
    fig, (ax,) = new_figure(width=8.0, height=5.2)
    for i, lib in enumerate(data["libs"].values()):
        points = sorted((p["recall"], p["qps"]) for p in lib["sweep"] if p.get("qps"))
        if not points:
            continue
        label = lib["library"]
        if label == "instant-distance":
            label += " (timed in Rust: no Python call)"
        ax.plot(
            [r for r, _ in points],
            [q for _, q in points],
            marker=MARKERS[i % len(MARKERS)],
            markersize=4,
            linewidth=2.2 if lib["library"] == "llmkg" else 1.3,
            color=colour(lib["library"], i),
            label=label,
        )
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries/s (one query per call, 1 thread; log scale)")
    ax.grid(which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    title = (
        f"HNSW on {data['dataset']} (n={data['n']:,}), M=16, ef_construction=200:"
        " recall vs speed (up and right is better)"
    )
    return finish(fig, title, data.get("run"), out / "hnsw-recall-qps.png")


def build_time(data: dict[str, Any], out: Path) -> Path:
    fig, (ax,) = new_figure(width=7.0, height=4.4)
    threads = sorted({int(t) for lib in data["libs"].values() for t in lib["build_seconds"]})
    series = {
        lib["library"]: [lib["build_seconds"].get(str(t)) for t in threads]
        for lib in data["libs"].values()
    }
    grouped_bars(ax, [f"{t} thread{'s' * (t > 1)}" for t in threads], series, "{:.1f}")
    ax.set_ylabel("seconds to build (lower is better)")
    ax.legend(fontsize=8)
    title = f"HNSW build time, {data['dataset']} (n={data['n']:,})"
    return finish(fig, title, data.get("run"), out / "hnsw-build.png")


def precisions(data: dict[str, Any], out: Path) -> Path | None:
    """Memory of each precision (with and without the full vectors) beside the peers',
    and its recall@10 over ef (batch search, rescored when the full vectors are kept)."""
    rows = data.get("precisions") or []
    if not rows:
        return None
    fig, (mem, rec) = new_figure(ncols=2, width=11.0, height=4.8)
    labels = [f"{r['precision']}\n{'+full' if r['keep_full'] else 'codes only'}" for r in rows]
    mb = [r["memory_bytes"] / 1e6 for r in rows]
    bars = mem.bar(range(len(rows)), mb, color=[colour("llmkg")] * len(rows), alpha=0.85)
    mem.bar_label(bars, [f"{v:.0f}" for v in mb], fontsize=7, padding=1)
    mem.set_xticks(range(len(rows)), labels, fontsize=7)
    for i, lib in enumerate(v for v in data["libs"].values() if v["library"] != "llmkg"):
        if lib.get("memory_bytes"):
            mem.axhline(
                lib["memory_bytes"] / 1e6,
                color=colour(lib["library"], i),
                linestyle="--",
                linewidth=1,
                label=f"{lib['library']}",
            )
    mem.set_ylabel("MB held by the index (lower is better)")
    mem.set_title("memory per precision (llmkg) and the peers' indexes", fontsize=9)
    mem.legend(fontsize=7)
    mem.grid(axis="y", alpha=0.3)
    for i, r in enumerate(rows):
        sweep = sorted(r["sweep"], key=lambda p: p["ef"])
        rec.plot(
            [p["ef"] for p in sweep],
            [p["recall"] for p in sweep],
            marker=MARKERS[i % len(MARKERS)],
            markersize=3,
            label=labels[i].replace("\n", ", "),
            color=f"C{i}",
        )
    rec.set_xscale("log")
    rec.set_xlabel("ef (search beam)")
    rec.set_ylabel("recall@10")
    rec.set_title("recall@10 by ef per precision (rescored when +full)", fontsize=9)
    rec.grid(which="both", alpha=0.3)
    rec.legend(fontsize=7)
    title = f"llmkg HNSW per precision, {data['dataset']} (n={data['n']:,})"
    return finish(fig, title, data.get("run"), out / "hnsw-precision.png")


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    paths = [recall_qps(data, out), build_time(data, out)]
    p = precisions(data, out)
    return paths + ([p] if p else [])
