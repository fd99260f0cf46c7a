"""The SQLite store's bulk work: for exports and imports, pages of live facts with their
parents' triples, facts placed under the parents they name, and a parent set afterwards;
for backups, the copy of the database. Mixed into ``SqliteStore``, whose writer thread
runs the writes (``_op_*``: one transaction each)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Sequence

import numpy as np

from llmkg.store.base import CopyProgress
from llmkg.store.records import (
    MAX_DEPTH,
    ExportRow,
    NodeRecord,
    Placement,
    export_row,
    record_from_row,
)
from llmkg.store.writer import Submit

COLUMNS = "id, subject, predicate, object, confidence, embedding, parent, seq, reads, deleted"
LIVE_BY_TRIPLE = (
    f"SELECT {COLUMNS} FROM nodes WHERE deleted=0 AND subject=? AND predicate=? AND object=?"
)
# The rowid's own order: a page is a range scan of the table, however large the store.
EXPORT = """SELECT n.id, n.subject, n.predicate, n.object, n.confidence, n.parent,
    p.subject, p.predicate, p.object{embedding}
FROM nodes n LEFT JOIN nodes p ON p.id = n.parent AND p.deleted = 0
WHERE n.deleted = 0 AND n.id > ? ORDER BY n.id LIMIT ?"""

# Pages of the database copied per step of a backup (4 MiB at SQLite's default page size):
# between steps the copy reports its progress.
BACKUP_STEP = 1024

Row = tuple[str, str, str, float, bytes, tuple[str, str, str] | None]


class BulkWrites:
    """Expects the store's ``_submit``, ``_next_seq``, ``_reader`` and ``_connect``."""

    _submit: Submit
    _next_seq: Callable[[], int]
    _reader: Callable[[], sqlite3.Connection]
    _connect: Callable[[], sqlite3.Connection]

    def export_page(self, after: int, limit: int, embeddings: bool) -> list[ExportRow]:
        query = EXPORT.format(embedding=", n.embedding" if embeddings else "")
        rows = self._reader().execute(query, (after, limit))
        return [export_row(r, embeddings) for r in rows]

    def place_many(self, facts: Sequence[Placement]) -> list[tuple[NodeRecord, bool]]:
        """See ``Store.place_many``. Returns once durable."""
        rows = [
            (f.subject, f.predicate, f.object, f.confidence, _blob(f.embedding), f.parent)
            for f in facts
        ]
        return self._submit(self._op_place_many, rows) if rows else []

    def relink(self, node_id: int, parent: int) -> NodeRecord | None:
        """See ``Store.relink``. Returns once durable."""
        return self._submit(self._op_relink, node_id, parent)

    def _op_place_many(
        self, conn: sqlite3.Connection, rows: list[Row]
    ) -> list[tuple[NodeRecord, bool]]:
        out = []
        for s, p, o, confidence, blob, parent in rows:
            row = conn.execute(LIVE_BY_TRIPLE, (s, p, o)).fetchone()
            if row is not None:
                if confidence > row[4]:
                    seq = self._next_seq()
                    conn.execute(
                        "UPDATE nodes SET confidence=?, seq=? WHERE id=?", (confidence, seq, row[0])
                    )
                    row = (*row[:4], confidence, row[5], row[6], seq, *row[8:])
                out.append((record_from_row(row), False))
                continue
            parent_id = None
            if parent is not None:
                found = conn.execute(LIVE_BY_TRIPLE, parent).fetchone()
                parent_id = found[0] if found else None
            seq = self._next_seq()
            cur = conn.execute(
                "INSERT INTO nodes (subject, predicate, object, confidence, embedding, parent, "
                "seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (s, p, o, confidence, blob, parent_id, seq),
            )
            assert cur.lastrowid is not None
            record = (cur.lastrowid, s, p, o, confidence, blob, parent_id, seq, 0, 0)
            out.append((record_from_row(record), True))
        return out

    def _op_relink(self, conn: sqlite3.Connection, node_id: int, parent: int) -> NodeRecord | None:
        row = conn.execute(f"SELECT {COLUMNS} FROM nodes WHERE id=? AND deleted=0", (node_id,))
        found = row.fetchone()
        live = conn.execute("SELECT 1 FROM nodes WHERE id=? AND deleted=0", (parent,))
        if found is None or live.fetchone() is None or _in_chain(conn, node_id, parent):
            return None
        seq = self._next_seq()
        conn.execute("UPDATE nodes SET parent=?, seq=? WHERE id=?", (parent, seq, node_id))
        return record_from_row((*found[:6], parent, seq, *found[8:]))

    def backup_to(self, dest: str | os.PathLike[str], progress: CopyProgress | None = None) -> None:
        """A consistent copy of the database (SQLite's online backup) at ``dest``, in steps
        of ``BACKUP_STEP`` pages, each reported to ``progress``."""
        # A connection of its own, in a read transaction for the whole copy: a copy in
        # steps restarts whenever another connection commits between two of them (under
        # steady writes, forever), unless its source holds one snapshot throughout.
        source = self._connect()
        target = sqlite3.connect(dest)
        try:
            source.execute("BEGIN")
            # A read opens the snapshot (BEGIN alone does not, and then each step would
            # open and end its own).
            source.execute("SELECT count(*) FROM sqlite_master").fetchone()
            page_size = source.execute("PRAGMA page_size").fetchone()[0]

            def step(status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(total - remaining, total, page_size)

            source.backup(target, pages=BACKUP_STEP, progress=step)
        finally:
            target.close()
            source.close()


def _in_chain(conn: sqlite3.Connection, node_id: int, start: int) -> bool:
    """Whether ``node_id`` is ``start`` or one of its ancestors (a chain deeper than the
    graph's reads follow counts as one too: no link is made that they could not walk)."""
    current: int | None = start
    for _ in range(MAX_DEPTH):
        if current is None:
            return False
        if current == node_id:
            return True
        row = conn.execute("SELECT parent FROM nodes WHERE id=?", (current,)).fetchone()
        current = row[0] if row else None
    return True


def _blob(embedding: np.ndarray) -> bytes:
    return np.ascontiguousarray(embedding, dtype="<f4").tobytes()
