"""What the client takes and answers beyond the engine's own result types.

The client answers ``llmkg.engine`` structs where the HTTP API carries the same thing
(``Node``, ``SearchHit``, ``AllocationResult``, ``Neighbor``, ``Traversal``,
``ExpandedSearch``, the export's ``exchange.ExportedFact``), so that code written
against the engine reads the same against a server. The types here are those with no
engine twin (health, tokens, backups) and ``Entity``, whose page cursors over HTTP are
opaque strings where the engine's are node ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict, Union

import msgspec

from llmkg.engine.results import Node

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

# An embedding: a sequence of floats or a 1-d numpy array (sent as a JSON list).
Vector = Union[Sequence[float], "npt.NDArray[np.float32]", "npt.NDArray[np.float64]"]


class _Triple(TypedDict):
    subject: str
    predicate: str
    object: str
    confidence: float


# (Not NotRequired: Python 3.10's typing has none.)
class FactInput(_Triple, total=False):
    """A fact to allocate, as ``AllocationEngine.allocate`` takes it; without an
    embedding the server embeds the triple."""

    embedding: Vector | None


class SearchFilter(TypedDict, total=False):
    """Exact ``subject``/``predicate``/``object`` and a ``min_confidence``, as
    ``AllocationEngine.search`` takes them."""

    subject: str
    predicate: str
    object: str
    min_confidence: float


class SearchExpand(TypedDict, total=False):
    """The ``expand`` of a search, as ``AllocationEngine.search`` takes it: ``hops`` 1 or
    2 (default 1), ``max_facts`` 1 to 200 (default 50), ``predicates`` to follow."""

    hops: int
    max_facts: int
    predicates: Sequence[str]


class Entity(msgspec.Struct, frozen=True):
    """``engine.Entity`` over HTTP: a subject or object string, a page of the facts that
    have it as subject and a page of those that have it as object, each with the cursor of
    its next page (pass it back as ``subject_after``/``object_after``; None at the end),
    and how many live facts of each predicate mention it."""

    name: str
    as_subject: list[Node]
    as_subject_next: str | None
    as_object: list[Node]
    as_object_next: str | None
    predicates: dict[str, int]


class HealthCheck(msgspec.Struct, frozen=True):
    ok: bool
    detail: str = ""


class Health(msgspec.Struct, frozen=True):
    """A probe's answer: ``status`` is ``ok`` (live), ``ready``, ``not_ready``,
    ``starting`` or ``draining``; ``checks`` by name; ``partition`` describes the shard
    the server serves."""

    status: str
    checks: dict[str, HealthCheck] = msgspec.field(default_factory=dict)
    partition: dict[str, object] = msgspec.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Live, or ready to serve."""
        return self.status in ("ok", "ready")


class AccessToken(msgspec.Struct, frozen=True):
    """A new access token from ``/api/v1/auth/refresh``, valid ``expires_in`` seconds."""

    access_token: str
    token_type: str
    expires_in: int


class Backup(msgspec.Struct, frozen=True):
    """A backup the server wrote: its folder (on the server), nodes and store sequence."""

    path: str
    nodes: int
    store_seq: int
