"""Search filters: the checks of a query's ``filter`` mapping (exact ``subject``,
``predicate`` and ``object``, ``min_confidence``), which then becomes a ``FactFilter`` of
the core's ``FactIndex``.

The ``FactIndex`` (``llmkg._core``, rust/core/src/facts/) keeps every live node's
subject, predicate, object and confidence. The index's search evaluates a ``FactFilter``
during its traversal, reading those facts in place: no list of allowed ids is built per
search, whatever share of the nodes the filter allows (a ``min_confidence`` alone allows
a share of every node). ``node_id in flt`` tests one id, for the nodes that the index has
not linked yet."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmkg._core import FactFilter, FactIndex
from llmkg.engine.facts import FactError, text_field

__all__ = ["FIELDS", "FactFilter", "FactIndex", "search_filter"]

FIELDS = ("subject", "predicate", "object")


def search_filter(
    facts: FactIndex, flt: Mapping[str, Any], max_text_length: int
) -> FactFilter | None:
    """The filter that ``flt`` asks for (``None``: no restriction). ``FactError`` names a
    bad field (``query.filter.<field>``)."""
    for key in flt:
        if key not in (*FIELDS, "min_confidence"):
            raise FactError(f"query.filter.{key}", "unknown field")
    subject, predicate, object_ = (
        None
        if flt.get(name) is None
        else text_field(flt[name], f"query.filter.{name}", max_text_length)
        for name in FIELDS
    )
    floor = flt.get("min_confidence")
    if floor is not None and (
        isinstance(floor, bool) or not isinstance(floor, (int, float)) or not 0 <= floor <= 1
    ):
        raise FactError("query.filter.min_confidence", "must be a number between 0 and 1")
    if subject is None and predicate is None and object_ is None and floor is None:
        return None
    return facts.filter(subject, predicate, object_, None if floor is None else float(floor))
