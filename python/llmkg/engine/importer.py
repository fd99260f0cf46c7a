"""The import of an export (``exchange.py``'s format) into a store.

Two passes. The first reads every line and checks it (JSON, fields, types, texts,
confidence, the vector's length) without writing anything: a bad line stops the import
there, naming its number and its field, with nothing stored. The second places the facts
in batches (``Store.place_many``: each batch one transaction) under the parents they
name, not where allocation would put them, so that the import of an export into an empty
store reproduces the graph: the same triples, confidences and parent links (by triple;
ids are the new store's). A fact without a vector gets the built-in embedder's.

It writes to the store, the source of truth, not through an engine: an engine opened on
the store afterwards brings its index up to date by its start-up replay, in batches far
larger (so far faster) than the linker of single allocations takes; a server following a
shared store (PostgreSQL) applies the new rows as it applies any other.

The rules:

- **Into an empty store** unless ``merge``: a store with facts is refused before the file
  is read. With ``merge``, a fact whose triple is stored already keeps its node, parent
  and vector, and its confidence becomes the larger of the two (as a repeated
  allocation's does); so does a triple that a file holds twice.
- **Parents** are linked by triple: to a fact stored before (with ``merge``) or on an
  earlier line, at once; to one on a later line, once every line is placed. A parent
  found nowhere, and a link that would close a cycle (a file can say that A is B's parent
  and B is A's), leave the fact a root: the summary counts them (``unlinked``) and the
  log names the first lines. An export lists parents before their children (see
  ``exchange.py``), so only hand-made files, or an export taken during writes, meet this.
- **A failure while placing** (the store's disk full, its database gone) stops the import:
  the batches committed before it stay (``ImportStoppedError`` says up to which line), none
  after. The same import with ``merge`` then finishes it: what is stored is kept as it is.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from llmkg.engine.exchange import LineError, log_progress, max_line_bytes, parse_line
from llmkg.engine.facts import PlacedFact
from llmkg.engine.placing import placements
from llmkg.progress import Progress, ProgressFactory

if TYPE_CHECKING:
    from llmkg.store import Store

log = logging.getLogger("llmkg.engine")

CHECK_STEP = 1000  # lines checked between two reports of the first pass
SHOWN_UNLINKED = 10  # lines named in the log of facts left without their parent


class StoreNotEmptyError(RuntimeError):
    """The store holds facts and the import was not told to merge: nothing was read."""


class ImportStoppedError(RuntimeError):
    """Placing failed part way: ``placed_lines`` lines (from the first) are stored; with
    ``linking`` every line is, and what failed is linking facts to parents on later
    lines."""

    def __init__(self, placed_lines: int, cause: BaseException, linking: bool = False) -> None:
        why = f"{type(cause).__name__}: {cause}"
        if linking:
            message = (
                f"every line is stored, but linking facts to parents on later lines failed "
                f"({why}); some of them are roots"
            )
        else:
            stored = f"lines 1 to {placed_lines} are stored" if placed_lines else "none is stored"
            message = (
                f"the import stopped after line {placed_lines}: {stored}, none after ({why}); "
                "run it again with --merge to finish it"
            )
        super().__init__(message)
        self.placed_lines, self.linking = placed_lines, linking


@dataclass
class ImportSummary:
    lines: int = 0  # facts read (blank lines aside)
    created: int = 0  # new facts stored
    merged: int = 0  # lines whose triple was stored already (or earlier in the file)
    linked_later: int = 0  # facts linked to a parent on a later line, at the end
    unlinked: int = 0  # facts that name a parent that was found nowhere (or a cycle)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lines(
    source: IO[bytes], limit: int, copy: IO[bytes] | None = None
) -> Iterator[tuple[int, bytes]]:
    """``(number, line)`` of each line that is not blank; ``LineError`` for one longer than
    ``limit`` bytes (read no further than that). ``copy``: every line is written there too
    (blank ones included, so that the numbers stay those of the source)."""
    number = 0
    while True:
        raw = source.readline(limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > limit:
            raise LineError(number, None, f"longer than {limit} bytes")
        if copy is not None:
            copy.write(raw)
        if raw.strip():
            yield number, raw


@contextmanager
def _rereadable(path: str, spool: Path | None) -> Iterator[tuple[IO[bytes], IO[bytes] | None]]:
    """The file to read (``-``: standard input) and, for standard input, a temporary copy
    the first pass writes for the second to read (in ``spool``, else the system's
    temporary directory)."""
    if path != "-":
        with open(path, "rb") as f:
            yield f, None
        return
    with tempfile.TemporaryFile(dir=spool) as copy:
        yield sys.stdin.buffer, copy


def check_file(
    source: IO[bytes],
    dim: int,
    max_text_length: int,
    copy: IO[bytes] | None = None,
    progress: ProgressFactory = log_progress,
) -> int:
    """The first pass: every line checked (``LineError`` at the first bad one); returns how
    many facts the file holds. ``copy``: also written there, line by line."""
    limit = max_line_bytes(dim, max_text_length)
    size = _size(source)
    reporter = progress("checking", size, "bytes")
    facts = read = 0
    for number, raw in _lines(source, limit, copy):
        parse_line(raw, number, dim, max_text_length)
        facts += 1
        read += len(raw)
        if facts % CHECK_STEP == 0:  # a step as large as one of the second pass
            reporter.update(read)
    reporter.update(read)
    reporter.done()
    return facts


def _size(source: IO[bytes]) -> int | None:
    try:
        return Path(source.name).stat().st_size if source.seekable() else None
    except (OSError, TypeError, AttributeError):
        return None


def import_file(
    store: Store,
    path: str,
    *,
    dim: int,
    max_text_length: int,
    batch: int = 1000,
    merge: bool = False,
    progress: ProgressFactory = log_progress,
    spool: Path | None = None,
) -> ImportSummary:
    """Import the NDJSON file at ``path`` (``-``: standard input) into ``store``, its facts'
    vectors of ``dim`` numbers, ``batch`` facts per transaction, by the rules of the
    module's docstring. Raises ``StoreNotEmptyError`` (without ``merge``, before reading),
    ``LineError`` (nothing stored), ``ImportStoppedError``."""
    started = time.monotonic()
    if not merge and (stored := store.count()) > 0:
        raise StoreNotEmptyError(
            f"the store holds {stored} facts: an import goes into an empty store, or merges "
            "with --merge (stored triples are kept, with the larger confidence); nothing "
            "was read"
        )
    with _rereadable(path, spool) as (source, copy):
        total = check_file(source, dim, max_text_length, copy, progress)
        second = copy if copy is not None else source
        second.seek(0)
        placer = _Placer(store, dim, max_text_length, batch, progress("importing", total, "facts"))
        summary = placer.run(second, total)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


class _Placer:
    """The second pass."""

    def __init__(
        self, store: Store, dim: int, max_text_length: int, batch: int, reporter: Progress
    ) -> None:
        self.store, self.dim, self.max_text_length = store, dim, max_text_length
        self.batch_size, self.reporter = batch, reporter
        self.batch: list[tuple[int, PlacedFact]] = []
        # Facts whose parent was not stored when they were: (line, node id, parent's triple).
        self.waiting: list[tuple[int, int, tuple[str, str, str]]] = []
        self.placed_lines = 0  # the last line of the last batch committed

    def run(self, source: IO[bytes], total: int) -> ImportSummary:
        summary = ImportSummary(lines=total)
        limit = max_line_bytes(self.dim, self.max_text_length)
        try:
            for number, raw in _lines(source, limit):
                self.batch.append((number, parse_line(raw, number, self.dim, self.max_text_length)))
                if len(self.batch) >= self.batch_size:
                    self._flush(summary)
        except LineError as e:  # checked in the first pass: the file changed since
            raise ImportStoppedError(self.placed_lines, e) from e
        if self.batch:
            self._flush(summary)
        self.reporter.done()
        self._link_later(summary)
        return summary

    def _flush(self, summary: ImportSummary) -> None:
        try:
            results = self.store.place_many(placements([p for _, p in self.batch], self.dim))
        except Exception as e:
            raise ImportStoppedError(self.placed_lines, e) from e
        for (number, p), (record, created) in zip(self.batch, results, strict=True):
            if not created:
                summary.merged += 1
                continue
            summary.created += 1
            if p.parent is not None and record.parent is None:
                self.waiting.append((number, record.node_id, p.parent))
        self.placed_lines = self.batch[-1][0]
        self.reporter.advance(len(self.batch))
        self.batch.clear()

    def _link_later(self, summary: ImportSummary) -> None:
        """Facts to parents on later lines, now that every line is stored."""
        unlinked = []
        try:
            for number, node_id, triple in self.waiting:
                parent = self.store.find(*triple)
                if parent is not None and self.store.relink(node_id, parent.node_id) is not None:
                    summary.linked_later += 1
                else:
                    unlinked.append(number)
        except Exception as e:
            raise ImportStoppedError(self.placed_lines, e, linking=True) from e
        summary.unlinked = len(unlinked)
        if unlinked:
            shown = ", ".join(map(str, unlinked[:SHOWN_UNLINKED]))
            more = len(unlinked) - SHOWN_UNLINKED
            log.warning(
                "%d facts name a parent found nowhere in the file or the store (or one that "
                "would close a cycle) and are roots: lines %s%s",
                len(unlinked),
                shown,
                f" and {more} more" if more > 0 else "",
            )
