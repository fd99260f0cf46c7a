"""The export format of a graph, NDJSON, and the export itself.

One JSON object per line (UTF-8, ``\\n``-terminated), one line per live fact, by id:

    {"id": 7, "subject": "Ada", "predicate": "wrote", "object": "Notes", "confidence": 0.9,
     "parent": {"id": 3, "subject": "Ada", "predicate": "born in", "object": "London"},
     "embedding": [0.013, ...]}

- ``id``: the fact's node id in the store it came from. An import gives new ids: it does
  not read it (beyond checking that it is a node id).
- ``subject``, ``predicate``, ``object`` (canonical form) and ``confidence`` as stored.
- ``parent``: null for a root; else the parent's id and triple. An import links a fact
  to its parent by the triple, which names the same fact in any store.
- ``embedding`` (with ``embedding=true`` / ``--embedding`` only): the stored vector, each
  float32 written as the double it equals (exactly; the double's shortest decimal), so
  that an import stores the same bytes. Without it an import embeds each fact
  with the built-in embedder: a store whose vectors came from clients needs them.

An export reads the store in keyset pages by id (``Store.export_page``), one read each,
never the whole store at once. Each page is consistent in itself; pages are read apart,
so a fact written or deleted while an export runs may or may not be in it, and no fact
is in it twice (ids only grow, and each page starts after the last id of the one before).
Parents come before their children: a parent is always older than its child (allocation
picks among stored nodes, a delete hands its children to its own parent), so it has a
smaller id. The one exception needs writes during the export: a fact whose parent was
committed after the export passed the parent's id (ids are given out before commit), and
then that child's parent is not in the file. Import's rule for it: ``importer.py``.
"""

from __future__ import annotations

import logging
from typing import IO, Annotated

import msgspec
import numpy as np

from llmkg.engine.facts import FactError, PlacedFact, parse_placed
from llmkg.progress import ProgressFactory, log_lines
from llmkg.store import Store
from llmkg.store.records import ExportRow
from llmkg.validation import error_location

log = logging.getLogger("llmkg.engine")

PAGE = 1000  # facts per page of an export
EMBEDDING_PAGE = 100  # with vectors: a page of 1000 at 768 dimensions would be 15 MB
MEDIA_TYPE = "application/x-ndjson"

NodeId = Annotated[int, msgspec.Meta(ge=1, lt=2**53)]
log_progress = log_lines(log)


class ExportedParent(msgspec.Struct):
    id: int
    subject: str
    predicate: str
    object: str


class ExportedFact(msgspec.Struct, omit_defaults=True):
    id: int
    subject: str
    predicate: str
    object: str
    confidence: float
    parent: ExportedParent | None
    embedding: list[float] | None = None


class ParentIn(msgspec.Struct, forbid_unknown_fields=True):
    subject: str
    predicate: str
    object: str
    id: NodeId | None = None


class FactIn(msgspec.Struct, forbid_unknown_fields=True):
    subject: str
    predicate: str
    object: str
    confidence: float
    parent: ParentIn | None = None
    id: NodeId | None = None
    embedding: list[float] | None = None


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(FactIn)


def _out(row: ExportRow) -> ExportedFact:
    parent = None
    if row.parent is not None and row.parent_triple is not None:
        parent = ExportedParent(row.parent, *row.parent_triple)
    embedding = None
    if row.embedding is not None:
        # float32 -> double is exact; the double's shortest form reads back to it.
        embedding = np.frombuffer(row.embedding, dtype="<f4").tolist()
    return ExportedFact(
        row.node_id, row.subject, row.predicate, row.object, row.confidence, parent, embedding
    )


def export_page(store: Store, after: int, embeddings: bool) -> tuple[bytes, int, int | None]:
    """The page of the export after id ``after``: its NDJSON lines, how many facts they
    are, and the id to pass as ``after`` next (None: this was the last page)."""
    limit = EMBEDDING_PAGE if embeddings else PAGE
    rows = store.export_page(after, limit, embeddings)
    data = _ENCODER.encode_lines([_out(r) for r in rows])
    return data, len(rows), rows[-1].node_id if len(rows) == limit else None


def export(
    store: Store,
    out: IO[bytes],
    embeddings: bool = False,
    progress: ProgressFactory = log_progress,
) -> int:
    """Write every live fact of ``store`` to ``out`` (see the module's docstring); returns
    how many."""
    reporter = progress("exporting", store.count(), "facts")
    after: int | None = 0
    written = 0
    while after is not None:
        data, count, after = export_page(store, after, embeddings)
        out.write(data)
        written += count
        reporter.advance(count)
    reporter.done()
    return written


class LineError(ValueError):
    """A line of an import that is not a fact of the export format: its number (from 1),
    the field (None: the line as a whole) and what is wrong."""

    def __init__(self, line: int, field: str | None, message: str) -> None:
        where = f"line {line}" + (f", field {field}" if field else "")
        super().__init__(f"{where}: {message}")
        self.line, self.field, self.message = line, field, message


def max_line_bytes(dim: int, max_text_length: int) -> int:
    """The longest line an import reads: six texts at their longest (4 bytes a character
    in UTF-8, escapes aside), a vector of ``dim`` numbers of at most 25 characters, and
    room for the rest. A longer line is refused before it is parsed."""
    return 6 * 4 * max_text_length + 25 * dim + 4096


def parse_line(raw: bytes, number: int, dim: int, max_text_length: int) -> PlacedFact:
    """One line of an export as a fact to place; ``LineError`` naming the field."""
    try:
        given = _DECODER.decode(raw)
    except msgspec.ValidationError as e:
        field, reason = error_location(e)
        raise LineError(number, field or None, reason) from None
    except msgspec.DecodeError as e:
        raise LineError(number, None, f"not a JSON object: {e}") from None
    fact: dict[str, object] = {
        "subject": given.subject,
        "predicate": given.predicate,
        "object": given.object,
        "confidence": given.confidence,
    }
    if given.embedding is not None:
        fact["embedding"] = given.embedding
    if given.parent is not None:
        p = given.parent
        fact["parent"] = {"subject": p.subject, "predicate": p.predicate, "object": p.object}
    try:
        return parse_placed(fact, dim, max_text_length, prefix="")
    except FactError as e:
        raise LineError(number, e.field, e.message) from None
