"""The figures of docs/benchmarks/, drawn from the benchmarks' saved results.

``python benches/report.py`` (``make bench-report``) reads the JSON files that the
benchmarks write to benches/results/ (see ``record.py``) and draws each figure whose
result exists; every figure says in its footer which machine ran it, when, on what data,
with which command, and whether it was a quick run.
"""

from figures.draw import FIGURES, Outcome, render

__all__ = ["FIGURES", "Outcome", "render"]
