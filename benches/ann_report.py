"""Collects what bench_hnsw.py measures and prints the comparison tables at the end."""

from __future__ import annotations

from dataclasses import dataclass, field

from ann_data import qps_at_recall

TARGETS = (0.90, 0.95, 0.99)
BASELINE = "hnswlib"


@dataclass
class LibResult:
    library: str
    build_seconds: dict[int, float] = field(default_factory=dict)  # threads -> seconds
    sweep: list[dict[str, float]] = field(default_factory=list)  # ef, recall, qps[, batch_qps]
    memory_bytes: int | None = None
    memory_how: str = ""
    note: str = ""


@dataclass
class PrecisionResult:
    precision: str
    keep_full: bool
    memory_bytes: int
    build_seconds: float
    rescore: bool
    sweep: list[dict[str, float]] = field(default_factory=list)  # ef, recall, batch_qps


@dataclass
class Report:
    dataset: str = ""
    n: int = 0
    libs: dict[str, LibResult] = field(default_factory=dict)
    precisions: list[PrecisionResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, result: LibResult) -> None:
        self.libs[result.library] = result

    def lines(self) -> list[str]:
        out: list[str] = []
        if not self.libs and not self.precisions:
            return out
        out.append(f"== HNSW on {self.dataset} (n={self.n:,}), m=16, ef_construction=200, k=10 ==")
        for lib in self.libs.values():
            out += _sweep_table(lib)
        out += _summary_table(self)
        out += _ratio_table(self)
        out += _precision_table(self)
        for name, why in self.skipped.items():
            out.append(f"skipped {name}: {why}")
        return out


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def _sweep_table(lib: LibResult) -> list[str]:
    out = ["", f"-- {lib.library}: recall@10 and queries/s over ef (single thread) --"]
    if lib.note:
        out.append(f"   {lib.note}")
    out.append(f"   {'ef':>5} {'recall@10':>10} {'QPS loop':>10} {'QPS batch':>10}")
    for p in lib.sweep:
        out.append(
            f"   {int(p['ef']):>5} {p['recall']:>10.4f} {_fmt(p['qps']):>10}"
            f" {_fmt(p.get('batch_qps')):>10}"
        )
    return out


def _row_values(lib: LibResult) -> dict[str, float | None]:
    values: dict[str, float | None] = {
        "build 1t s": lib.build_seconds.get(1),
        "build 2t s": lib.build_seconds.get(2),
    }
    for t in TARGETS:
        values[f"QPS@{t:.2f}"] = qps_at_recall(lib.sweep, t)
    values["memory MB"] = None if lib.memory_bytes is None else lib.memory_bytes / 1e6
    return values


def _summary_table(report: Report) -> list[str]:
    cols = ["build 1t s", "build 2t s", *[f"QPS@{t:.2f}" for t in TARGETS], "memory MB"]
    out = ["", "-- summary (QPS: one query per call, single thread, interpolated over ef) --"]
    out.append(f"   {'library':<18}" + "".join(f"{c:>12}" for c in cols))
    for lib in report.libs.values():
        v = _row_values(lib)
        cells = [
            _fmt(v[c], ".1f" if c.startswith("build") or c == "memory MB" else ",.0f") for c in cols
        ]
        out.append(f"   {lib.library:<18}" + "".join(f"{c:>12}" for c in cells))
    notes = {lib.library: lib.memory_how for lib in report.libs.values() if lib.memory_how}
    out += [f"   memory of {k}: {v}" for k, v in notes.items()]
    out.append("   '-' = not measured, or that recall was never reached over the ef sweep")
    return out


def _ratio_table(report: Report) -> list[str]:
    base = report.libs.get(BASELINE)
    if base is None:
        return ["", f"-- no ratio table: {BASELINE} was not measured --"]
    b = _row_values(base)
    cols = list(b)
    out = ["", f"-- ratios against {BASELINE} (build, memory: lower is better; QPS: higher) --"]
    out.append(f"   {'library':<18}" + "".join(f"{c:>12}" for c in cols))
    for lib in report.libs.values():
        v = _row_values(lib)
        out.append(f"   {lib.library:<18}" + "".join(f"{_ratio(v[c], b[c]):>12}" for c in cols))
    return out


def _ratio(x: float | None, y: float | None) -> str:
    return "-" if x is None or not y else f"{x / y:.2f}x"


def _precision_table(report: Report) -> list[str]:
    if not report.precisions:
        return []
    base = report.libs.get(BASELINE)
    base_mem = base.memory_bytes if base else None
    efs = sorted({int(p["ef"]) for r in report.precisions for p in r.sweep})
    out = ["", "-- llmkg per precision: memory and recall@10 by ef --"]
    head = (
        f"   {'precision':<9} {'keep_full':>9} {'rescore':>7} {'MB':>8} {'B/vec':>7}"
        f" {'vs hnswlib':>10}"
    )
    out.append(head + "".join(f"{'ef' + str(e):>8}" for e in efs))
    for r in report.precisions:
        by_ef = {int(p["ef"]): p["recall"] for p in r.sweep}
        vs = f"{r.memory_bytes / base_mem:.2f}x" if base_mem else "-"
        row = (
            f"   {r.precision:<9} {r.keep_full!s:>9} {r.rescore!s:>7}"
            f" {r.memory_bytes / 1e6:>8.1f} {r.memory_bytes / max(report.n, 1):>7.0f} {vs:>10}"
        )
        out.append(row + "".join(f"{_fmt(by_ef.get(e), '.4f'):>8}" for e in efs))
    return out
