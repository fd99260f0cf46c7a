"""Which figures come from which result file, and drawing all that can be drawn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from figures import ann, cache, cluster, engine, k6
from figures.common import load

Draw = Callable[[dict[str, Any], Path], list[Path]]

# result file (in the results folder) -> what draws its figures
FIGURES: dict[str, Draw] = {
    "hnsw.json": ann.draw,
    "cache.json": cache.draw,
    "engine.json": engine.draw,
    "cluster.json": cluster.draw,
    "k6-summary.json": k6.draw,
}


@dataclass
class Outcome:
    result: str
    written: list[Path] = field(default_factory=list)
    missing: bool = False


def render(results: Path, out: Path, only: list[str] | None = None) -> list[Outcome]:
    """Draw the figures of every result file found in ``results`` into ``out``."""
    outcomes = []
    for name, draw in FIGURES.items():
        if only is not None and name not in only:
            continue
        data = load(results / name)
        if data is None:
            outcomes.append(Outcome(name, missing=True))
            continue
        outcomes.append(Outcome(name, draw(data, out)))
    return outcomes
