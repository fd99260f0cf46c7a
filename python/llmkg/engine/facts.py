"""Facts as they arrive: validation with errors that name the field, and the canonical
triple that identifies a fact."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TEXT_LENGTH = 4096


class FactError(ValueError):
    """A fact or a query with a bad field; ``field`` names it (e.g. ``"fact.confidence"``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Fact:
    subject: str
    predicate: str
    object: str
    confidence: float
    embedding: np.ndarray | None = None


def canonical(text: str) -> str:
    """Trimmed, with runs of whitespace collapsed to one space; case is kept."""
    return " ".join(text.split())


def text_field(value: Any, field: str, max_length: int) -> str:
    if not isinstance(value, str):
        raise FactError(field, f"must be a string, got {type(value).__name__}")
    text = canonical(value)
    if not text:
        raise FactError(field, "must not be empty")
    if len(text) > max_length:
        raise FactError(field, f"must be at most {max_length} characters, got {len(text)}")
    return text


def embedding_field(value: Any, field: str, dim: int) -> np.ndarray:
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise FactError(field, f"must be an array of {dim} numbers")
    try:
        vec = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise FactError(field, f"must be an array of {dim} numbers") from None
    if vec.shape != (dim,):
        raise FactError(field, f"must have {dim} values, got {vec.size}")
    if not np.isfinite(vec).all():
        raise FactError(field, "must not contain NaN or infinity")
    if not vec.any():
        raise FactError(field, "must not be all zeros")
    return vec


def parse_fact(
    raw: Any, dim: int, max_text_length: int = MAX_TEXT_LENGTH, prefix: str = "fact"
) -> Fact:
    """Validate a fact given as a mapping (or a `Fact`)."""
    if isinstance(raw, Fact):
        raw = {
            "subject": raw.subject,
            "predicate": raw.predicate,
            "object": raw.object,
            "confidence": raw.confidence,
            "embedding": raw.embedding,
        }
    if not isinstance(raw, Mapping):
        raise FactError(prefix or "fact", f"must be an object, got {type(raw).__name__}")
    allowed = {"subject", "predicate", "object", "confidence", "embedding"}
    for key in raw:
        if key not in allowed:
            raise FactError(_at(prefix, key), "unknown field")
    for key in ("subject", "predicate", "object", "confidence"):
        if key not in raw:
            raise FactError(_at(prefix, key), "is required")
    confidence = raw["confidence"]
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise FactError(_at(prefix, "confidence"), "must be a number")
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        raise FactError(_at(prefix, "confidence"), f"must be between 0 and 1, got {confidence}")
    embedding = raw.get("embedding")
    return Fact(
        subject=text_field(raw["subject"], _at(prefix, "subject"), max_text_length),
        predicate=text_field(raw["predicate"], _at(prefix, "predicate"), max_text_length),
        object=text_field(raw["object"], _at(prefix, "object"), max_text_length),
        confidence=float(confidence),
        embedding=None
        if embedding is None
        else embedding_field(embedding, _at(prefix, "embedding"), dim),
    )


def parse_batch(facts: Sequence[Any], dim: int, max_text_length: int, max_batch: int) -> list[Fact]:
    """Every fact of a batch parsed before any is stored (``FactError`` names
    ``facts[i]``), at most ``max_batch`` of them."""
    if len(facts) > max_batch:
        raise FactError("facts", f"at most {max_batch} facts per batch, got {len(facts)}")
    return [parse_fact(f, dim, max_text_length, prefix=f"facts[{i}]") for i, f in enumerate(facts)]


def check_search(embedding: Any, text: Any, k: Any, ef: Any, max_k: int) -> None:
    """A search's arguments that need no embedding space: one of ``embedding`` and
    ``text``, ``k`` from 1 to ``max_k``, ``ef`` (if given) from 1 to 10000."""
    if (embedding is None) == (text is None):
        raise FactError("query", "give exactly one of embedding and text")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= max_k:
        raise FactError("query.k", f"must be an integer from 1 to {max_k}")
    if ef is not None and (
        isinstance(ef, bool) or not isinstance(ef, int) or not 1 <= ef <= 10_000
    ):
        raise FactError("query.ef", "must be an integer from 1 to 10000")


def _at(prefix: str, key: str) -> str:
    """The name of ``key`` in the object at ``prefix`` (empty: the top level)."""
    return f"{prefix}.{key}" if prefix else key


@dataclass(frozen=True)
class PlacedFact:
    """A fact with the parent it names by triple (None: a root), as an import places it."""

    fact: Fact
    parent: tuple[str, str, str] | None = None


def parse_placed(
    raw: Any, dim: int, max_text_length: int = MAX_TEXT_LENGTH, prefix: str = "fact"
) -> PlacedFact:
    """Validate a fact given as a mapping with the fields of ``parse_fact`` and ``parent``:
    null, or an object with the parent's ``subject``, ``predicate`` and ``object`` (in
    canonical form, as the fact's own; a fact cannot be its own parent)."""
    if isinstance(raw, PlacedFact):
        return PlacedFact(parse_fact(raw.fact, dim, max_text_length, prefix), raw.parent)
    if not isinstance(raw, Mapping):
        raise FactError(prefix or "fact", f"must be an object, got {type(raw).__name__}")
    fact = parse_fact({k: v for k, v in raw.items() if k != "parent"}, dim, max_text_length, prefix)
    given = raw.get("parent")
    if given is None:
        return PlacedFact(fact)
    where = _at(prefix, "parent")
    if not isinstance(given, Mapping):
        raise FactError(where, "must be null or an object with subject, predicate and object")
    for key in given:
        if key not in ("subject", "predicate", "object"):
            raise FactError(f"{where}.{key}", "unknown field")
    parts = []
    for key in ("subject", "predicate", "object"):
        if key not in given:
            raise FactError(f"{where}.{key}", "is required")
        parts.append(text_field(given[key], f"{where}.{key}", max_text_length))
    parent = (parts[0], parts[1], parts[2])
    if parent == (fact.subject, fact.predicate, fact.object):
        raise FactError(where, "a fact cannot be its own parent")
    return PlacedFact(fact, parent)
