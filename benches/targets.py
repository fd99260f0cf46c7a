"""The headline table: llmkg against its peers on the rows the project sets itself targets
for, read from the saved benchmark results (benches/results/), each as a ratio measured in
one run of its benchmark.

    python benches/targets.py                      # print the Markdown table
    python benches/targets.py --out docs/benchmarks/targets.md

A row whose result file is missing says so. ``make bench-report`` writes the table beside
the figures; the README shows it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from record import REPO, results_dir

RECALL = 0.95  # the recall@10 at which index speeds are compared


@dataclass(frozen=True)
class Row:
    what: str
    measured: str
    target: str
    met: bool | None  # None: not measured
    source: str


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / name
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def qps_at(sweep: list[dict[str, Any]], key: str = "qps") -> float | None:
    """Queries/s (``key``: one query per call, or ``batch_qps``) at the first ef of the
    sweep that reaches the recall compared at (None: none does, or not measured)."""
    for point in sorted(sweep, key=lambda p: p["ef"]):
        if point["recall"] >= RECALL and key in point:
            return float(point[key])
    return None


def _speed_vs(ours: dict[str, Any] | None, peer: list[dict[str, Any]]) -> float | None:
    """Our QPS over the peer's at the compared recall, one query per call where both
    were measured so, else in batches."""
    if ours is None:
        return None
    key = "qps" if any("qps" in p for p in ours["sweep"]) else "batch_qps"
    return _ratio(qps_at(ours["sweep"], key), qps_at(peer, key))


def _ratio(x: float | None, y: float | None) -> float | None:
    return None if x is None or not y else x / y


def _fmt(x: float | None, unit: str = "x") -> str:
    return "-" if x is None else f"{x:.2f}{unit}"


def index_rows(h: dict[str, Any]) -> list[Row]:
    hnswlib = h["libs"].get("hnswlib", {}).get("sweep", [])
    by = {(p["precision"], p["keep_full"], p["rescore"]): p for p in h["precisions"]}
    full = by.get(("full", True, True))
    q8 = by.get(("q8", True, True))
    q8_codes = by.get(("q8", False, False))
    full_ratio = _speed_vs(full, hnswlib)
    q8_ratio = _speed_vs(q8, hnswlib)
    memory = _ratio(
        q8_codes["memory_bytes"] if q8_codes else None, full["memory_bytes"] if full else None
    )
    source = f"{h['run']['command']} ({h['dataset']})"
    return [
        Row(
            f"index QPS at recall@10 {RECALL}, 1 thread, vs hnswlib",
            f"full {_fmt(full_ratio)}, q8 + rescoring {_fmt(q8_ratio)}",
            "q8 + rescoring >= 1.5x",
            None if q8_ratio is None else q8_ratio >= 1.5,
            source,
        ),
        Row(
            "index memory, q8 codes (full rows in a mapped file) vs full",
            _fmt(memory),
            "<= 0.4x",
            None if memory is None else memory <= 0.4,
            source,
        ),
    ]


def _recalls(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> tuple[str, bool]:
    """The two recalls@10 as the table shows them, and whether ours is the peer's or
    better (the search ratios count only then)."""
    if ours is None:
        return "", False
    if theirs is None:
        return f" (recall@10 {ours['recall10']:.4f})", False
    text = f" (recall@10 {ours['recall10']:.4f} vs {theirs['recall10']:.4f})"
    return text, ours["recall10"] >= theirs["recall10"]


def q8_row(pair: dict[str, Any] | None, source: str) -> Row:
    """The engine with every node at q8, timed in turn with qdrant-edge."""
    what = "engine search p50, every node q8, k=50, vs qdrant-edge with payload"
    target = "<= 1.0x, recall@10 >= the peer's"
    if pair is None:
        return Row(what, "-", target, None, source)
    ours, theirs = pair["llmkg"], pair["peer_row"]
    p50 = _ratio(ours["p50_ms"], theirs["p50_ms"])
    recall, as_good = _recalls(ours, theirs)
    return Row(
        what,
        f"{_fmt(p50)}{recall}",
        target,
        None if p50 is None else p50 <= 1.0 and as_good,
        source,
    )


def engine_rows(e: dict[str, Any]) -> list[Row]:
    searches = {s["library"].split()[0]: s for s in e["searches"]}
    ours, qdrant = searches.get("llmkg"), searches.get("qdrant-edge-py")
    # Timed in turn with qdrant-edge's, where the run has it: one moment of the host.
    q8: dict[str, Any] | None = None
    for pair in e.get("pairs", []):
        if pair["peer"].startswith("qdrant-edge-py"):
            if pair.get("variant") == "every node q8":
                q8 = pair
            elif "variant" not in pair:
                ours, qdrant = pair["llmkg"], pair["peer_row"]
    p50 = _ratio(ours and ours["p50_ms"], qdrant and qdrant["p50_ms"])
    p95 = _ratio(ours and ours["p95_ms"], qdrant and qdrant["p95_ms"])
    recall, as_good = _recalls(ours, qdrant)
    rates = {(r["library"].split()[0], r["kind"], r["how"]): r for r in e["inserts"]}

    def rate(library: str, kind: str, how: str) -> float | None:
        for (lib, k, h), r in rates.items():
            if lib == library and k == kind and h.startswith(how):
                return float(r["n"] / r["seconds"])
        return None

    bulk = _ratio(
        rate("qdrant-edge-py", "bulk", "bulk"), rate("llmkg", "bulk", "allocate_many")
    )  # time ratio: ours over theirs
    fsync = rate("llmkg", "single", "allocate, 8 threads, fsync")
    chroma = rate("chromadb", "single", "one point")
    source = e["run"]["command"]
    return [
        Row(
            "engine search p50 / p95, k=50, vs qdrant-edge with payload",
            f"{_fmt(p50)} / {_fmt(p95)}{recall}",
            "p50 <= 0.7x, p95 <= 1.0x, recall@10 >= the peer's",
            None if p50 is None or p95 is None else p50 <= 0.7 and p95 <= 1.0 and as_good,
            source,
        ),
        q8_row(q8, source),
        Row(
            "bulk load time, allocate_many vs qdrant-edge upsert + optimize",
            _fmt(bulk),
            "<= 1.5x",
            None if bulk is None else bulk <= 1.5,
            source,
        ),
        Row(
            "fsync-durable allocations/s, 8 threads",
            "-"
            if fsync is None
            else f"{fsync:,.0f}/s"
            + ("" if chroma is None else f" ({fsync / chroma:.1f}x chromadb's single adds)"),
            ">= 1,500/s and >= 10x chromadb",
            None if fsync is None else fsync >= 1500 and (chroma is None or fsync >= 10 * chroma),
            source,
        ),
    ]


def cache_rows(c: dict[str, Any]) -> list[Row]:
    one = {r["library"]: r for r in c["throughput_mops"] if r["threads"] == 1}
    ours = one.get("llmkg lru-with-frequency")
    peer = one.get("cachebox LRUCache")
    put = _ratio(ours and ours["put-evict"], peer and peer["put-evict"])
    zipf = c["hit_ratio"].get("llmkg lru-with-frequency", {}).get("zipf(0.9)")
    return [
        Row(
            "cache evicting put vs cachebox, 1 thread",
            _fmt(put) + ("" if zipf is None else f" (hit ratio zipf(0.9) {zipf:.1%})"),
            ">= 1.0x, hit ratios unchanged",
            None if put is None else put >= 1.0,
            c["run"]["command"],
        )
    ]


def idle_rows(i: dict[str, Any]) -> list[Row]:
    mb = i["resident_bytes"] / 2**20
    return [
        Row(
            "idle resident memory, embedded defaults",
            f"{mb:.0f} MB",
            "< 80 MB",
            mb < 80,
            i["run"]["command"],
        )
    ]


def k6_rows(k: dict[str, Any]) -> list[Row]:
    metrics: dict[str, Any] = k["metrics"]

    def p95(name: str) -> float | None:
        m = metrics.get(f"http_req_duration{{name:{name}}}")
        if m is None:
            return None
        values = m.get("values", m)
        return float(values["p(95)"])

    failed = metrics.get("http_req_failed")
    failed_rate = None if failed is None else failed.get("values", failed).get("value")
    allocate, search = p95("allocate"), p95("search")
    run = k.get("run", {})
    return [
        Row(
            "k6, 200 VUs (make loadtest): p95 allocate / search",
            f"{_fmt(allocate, ' ms')} / {_fmt(search, ' ms')}, failed "
            + ("-" if failed_rate is None else f"{failed_rate:.2%}"),
            "<= 15 / 8 ms, 0 failed",
            None
            if allocate is None or search is None
            else allocate <= 15 and search <= 8 and failed_rate == 0,
            run.get("command", "make loadtest"),
        )
    ]


SOURCES: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "hnsw.json": index_rows,
    "engine.json": engine_rows,
    "cache.json": cache_rows,
    "idle.json": idle_rows,
    "k6-summary.json": k6_rows,
}


def rows(results: Path) -> list[Row]:
    out: list[Row] = []
    for name, make in SOURCES.items():
        data = _load(results, name)
        if data is None:
            out.append(Row(f"({name} not saved)", "-", "-", None, "make bench-report RUN=1"))
            continue
        out += make(data)
    return out


def markdown(table: list[Row]) -> str:
    mark = {True: "yes", False: "no", None: "-"}
    lines = [
        "| what | measured | target | met |",
        "| --- | --- | --- | --- |",
        *(f"| {r.what} | {r.measured} | {r.target} | {mark[r.met]} |" for r in table),
        "",
        "Each row is a ratio (or a figure) from one run of its benchmark:",
        "",
        *sorted({f"- `{r.source}`" for r in table}),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=results_dir())
    p.add_argument("--out", type=Path, help="write the Markdown table here")
    args = p.parse_args(argv)
    text = markdown(rows(args.results))
    if args.out:
        args.out.write_text(text)
        print(f"wrote {args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
