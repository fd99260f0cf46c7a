"""The engine benchmark (bench_engine.py, results/engine.json): search latency and
inserts per second, llmkg's AllocationEngine against the embedded peers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures.common import colour, finish, grouped_bars, new_figure


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    fig, (lat, ins) = new_figure(ncols=2, width=12.0, height=5.0)
    searches: list[dict[str, Any]] = data.get("searches", [])
    # llmkg's row timed in turn with qdrant-edge's, as the headline table takes it.
    paired = next(
        (
            p["llmkg"]
            for p in data.get("pairs", [])
            if p["peer"].startswith("qdrant-edge-py") and "variant" not in p
        ),
        None,
    )
    if paired is not None:
        searches = [paired if s["library"] == "llmkg" else s for s in searches]
    series = {
        f"{s['library']} (recall@10 {s['recall10']:.3f})": [
            s["p50_ms"],
            s["p95_ms"],
            s["p99_ms"],
        ]
        for s in searches
    }
    grouped_bars(lat, ["p50", "p95", "p99"], series, "{:.2f}")
    lat.set_ylabel("ms per search (lower is better)")
    title = "search, k=50, one query per call, 1 thread"
    if paired is not None:
        title += "\n(each peer's queries in turn with llmkg's)"
    lat.set_title(title, fontsize=9)
    if series:
        lat.legend(fontsize=7)

    inserts: list[dict[str, Any]] = data.get("inserts", [])
    labels = [f"{r['library']}\n{r['how']}" for r in inserts]
    rates = [r["n"] / r["seconds"] for r in inserts]
    ys = range(len(inserts))
    bars = ins.barh(
        ys,
        rates,
        color=[colour(r["library"], i) for i, r in enumerate(inserts)],
        hatch=None,
    )
    for bar, r in zip(bars, inserts, strict=True):
        if r["kind"] == "bulk":
            bar.set_hatch("//")  # batched upserts: a lighter job than one durable fact
    ins.bar_label(bars, [f"{v:,.0f}" for v in rates], fontsize=7, padding=2)
    ins.set_yticks(list(ys), labels, fontsize=7)
    ins.invert_yaxis()
    ins.set_xscale("log")
    ins.set_xlabel("items/s (log; higher is better; hatched: bulk batches)")
    ins.set_title("inserts: llmkg's allocate is durable and searches first", fontsize=9)
    ins.grid(axis="x", which="both", alpha=0.3)
    skipped = data.get("skipped") or {}
    if skipped:
        ins.text(
            0.99, 0.01, "not measured: " + ", ".join(skipped), transform=ins.transAxes,
            fontsize=7, ha="right", va="bottom", color="0.4",
        )  # fmt: skip
    title = "Allocation engine against its embedded peers"
    return [finish(fig, title, data.get("run"), out / "engine.png")]
