"""The load test's summary (``k6 run --summary-export``, results/k6-summary.json):
latency percentiles per endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures.common import finish, grouped_bars, new_figure

DURATION = "http_req_duration"
STATS = ["med", "p(90)", "p(95)", "p(99)", "max"]


def _values(metric: dict[str, Any]) -> dict[str, float]:
    # --summary-export writes a trend's stats at the top level; the newer JSON summary
    # nests them under "values".
    values: dict[str, float] = metric.get("values", metric)
    return values


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    metrics: dict[str, Any] = data["metrics"]
    endpoints = {
        key.removeprefix(DURATION + "{name:").removesuffix("}"): _values(m)
        for key, m in metrics.items()
        if key.startswith(DURATION + "{name:")
    }
    if DURATION in metrics:
        endpoints["all requests"] = _values(metrics[DURATION])
    stats = [s for s in STATS if any(s in v for v in endpoints.values())]
    fig, (ax,) = new_figure(width=8.0, height=4.6)
    series = {name: [v.get(s) for s in stats] for name, v in endpoints.items()}
    grouped_bars(ax, stats, series, "{:.1f}")
    ax.set_ylabel("ms per request (lower is better)")
    ax.legend(fontsize=8)
    reqs = _values(metrics.get("http_reqs", {}))
    rate = f", {reqs['rate']:,.0f} requests/s" if "rate" in reqs else ""
    title = f"Load test (k6) latency percentiles per endpoint{rate}"
    return [finish(fig, title, data.get("run"), out / "k6-latency.png")]
