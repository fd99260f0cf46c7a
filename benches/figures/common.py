"""What every figure shares: the style, the footer that says where the numbers come
from, and the file it is saved to."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display, the same output everywhere

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

# Colours fixed per library, so a library looks the same in every figure.
COLOURS = {
    "llmkg": "#d62728",
    "hnswlib": "#1f77b4",
    "faiss": "#2ca02c",
    "instant-distance": "#9467bd",
    "qdrant": "#ff7f0e",
    "chromadb": "#8c564b",
    "cachebox": "#1f77b4",
    "theine": "#2ca02c",
    "moka": "#9467bd",
    "lru-dict": "#ff7f0e",
    "cachetools": "#8c564b",
    "dict": "#7f7f7f",
    "exact LRU": "#bcbd22",
    "Belady": "#17becf",
}
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def colour(name: str, fallback: int = 0) -> str:
    """The colour of the first known library whose name starts ``name``."""
    if name.startswith("llmkg lru") and "frequency" not in name:
        return "#ff9896"  # the cache's second policy (exact lru): a lighter red
    if name.startswith("llmkg q8"):
        # The index's q8 + rescoring lines beside its full-precision one: other reds.
        return "#ff9896" if "mapped" in name else "#e377c2"
    for prefix, c in COLOURS.items():
        if name.startswith(prefix):
            return c
    return f"C{fallback % 10}"


def load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def footer(run: dict[str, Any] | None, width: int = 120) -> str:
    """Which run it is, the machine, the date, the data and the command, in a few lines."""
    if not run:
        return "run details not recorded with this result"
    m = run.get("machine", {})
    quick = "QUICK run (a smoke-sized run, not the full benchmark)"
    kind = quick if run.get("quick") else "full run"
    memory = f", {m['memory_gib']:g} GiB" if m.get("memory_gib") else ""
    lines = [
        f"{kind} on {run.get('date', '?')}; machine: {m.get('cores', '?')} cores,"
        f" {m.get('cpu', '?')}{memory}, Python {m.get('python', '?')}",
        f"data: {run.get('dataset', '?')}",
        f"command: {run.get('command', '?')}",
    ]
    return "\n".join(textwrap.fill(line, width, subsequent_indent="    ") for line in lines)


def new_figure(ncols: int = 1, width: float = 8.0, height: float = 4.6) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, axes[0]


def finish(fig: Figure, title: str, run: dict[str, Any] | None, path: Path) -> Path:
    """Title, footer, layout; written as PNG to ``path`` and closed."""
    text = footer(run)
    title = textwrap.fill(title, int(fig.get_figwidth() * 9))  # ~9 bold 11 pt chars an inch
    lines = text.count("\n") + 1
    fig.suptitle(title, fontsize=11, fontweight="bold")
    # Room at the bottom for the footer, in inches turned into a fraction of the height.
    bottom = (0.16 * lines + 0.25) / fig.get_figheight()
    top = 1 - (0.2 * (title.count("\n") + 1) + 0.1) / fig.get_figheight()
    fig.tight_layout(rect=(0, bottom, 1, top))
    fig.text(0.01, 0.012, text, fontsize=6.5, color="0.3", va="bottom", family="monospace")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grouped_bars(
    ax: Any, groups: list[str], series: dict[str, list[float | None]], fmt: str = "{:.2f}"
) -> None:
    """Bars of each series side by side in each group; a missing value leaves a gap."""
    n = max(len(series), 1)
    width = 0.8 / n
    used: set[str] = set()
    for i, (name, values) in enumerate(series.items()):
        c = colour(name, i)
        c = f"C{i % 10}" if c in used else c  # two variants of one library
        used.add(c)
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(groups))]
        present = [(x, v) for x, v in zip(xs, values, strict=True) if v is not None]
        if not present:
            continue
        bars = ax.bar(
            [x for x, _ in present],
            [v for _, v in present],
            width,
            label=name,
            color=c,
        )
        if n <= 4:
            ax.bar_label(bars, [fmt.format(v) for _, v in present], fontsize=6, padding=1)
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)
