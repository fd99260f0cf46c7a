"""The SQLite store's reads of the graph: triple patterns, children, ancestors and
entities, over the partial indexes of the live rows (``schema.py``, format 2)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from llmkg.store.records import FACT_COLUMNS, NO_END, ROLES, Node, prefix_end

ANCESTORS = f"""WITH RECURSIVE up(id, depth) AS (
    SELECT parent, 1 FROM nodes WHERE id = ? AND deleted = 0 AND parent IS NOT NULL
    UNION ALL
    SELECT n.parent, up.depth + 1 FROM up JOIN nodes n ON n.id = up.id
    WHERE n.parent IS NOT NULL AND up.depth < ?)
SELECT {", ".join("n." + c for c in FACT_COLUMNS.split(", "))}
FROM up JOIN nodes n ON n.id = up.id AND n.deleted = 0 ORDER BY up.depth"""

# The windows of ``facts_around``: each name's last id when it has more than the window's
# width (the id at OFFSET width - 1, read from the partial index alone), then the facts
# up to it through the same index (``{role}=? AND rowid<=?``, a range of its entries).
# Names with a full window come first (kind 0, the last id in ``id``), then the facts by
# id. MATERIALIZED: each window's end is computed once, not once per use. The names and
# predicates are bound one a parameter: SQLite's JSON functions would cut a text at a NUL.
AROUND = """WITH f(name) AS (VALUES {names}),
w(name, last) AS MATERIALIZED (SELECT name, (SELECT id FROM nodes
    WHERE deleted = 0 AND {role} = f.name ORDER BY id LIMIT 1 OFFSET ?) FROM f)
SELECT 0, last, name, NULL, NULL, NULL, NULL FROM w WHERE last IS NOT NULL
UNION ALL
SELECT 1, n.id, n.subject, n.predicate, n.object, n.confidence, n.parent
FROM w JOIN nodes n ON n.{role} = w.name AND n.deleted = 0
    AND n.id <= coalesce(w.last, {no_end}){predicates}
ORDER BY 1, 2"""
# Names a statement (SQLite takes 32,766 parameters; the predicates are 100 at most).
AROUND_CHUNK = 1000


class GraphReads:
    """Mixed into ``SqliteStore``, whose per-thread read connections it uses."""

    def _reader(self) -> sqlite3.Connection:
        raise NotImplementedError

    def match(
        self,
        subject: str | None,
        predicate: str | None,
        object: str | None,
        min_confidence: float | None,
        after: int,
        limit: int,
    ) -> list[Node]:
        where = ["deleted=0", "id>?"]
        params: list[Any] = [after]
        # With a subject or an object given, `+predicate` keeps SQLite off the predicate
        # index: predicates are few, so each matches far more rows than a subject does.
        pred = "+predicate" if subject is not None or object is not None else "predicate"
        for column, value in (("subject", subject), (pred, predicate), ("object", object)):
            if value is not None:
                where.append(f"{column}=?")
                params.append(value)
        if min_confidence is not None:
            where.append("confidence>=?")
            params.append(min_confidence)
        rows = self._reader().execute(
            f"SELECT {FACT_COLUMNS} FROM nodes WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return [Node(*r) for r in rows]

    def children(self, node_id: int, after: int, limit: int) -> list[Node]:
        rows = self._reader().execute(
            f"SELECT {FACT_COLUMNS} FROM nodes WHERE deleted=0 AND parent=? AND id>? "
            "ORDER BY id LIMIT ?",
            (node_id, after, limit),
        )
        return [Node(*r) for r in rows]

    def ancestors(self, node_id: int, max_depth: int) -> list[Node]:
        rows = self._reader().execute(ANCESTORS, (node_id, max_depth))
        return [Node(*r) for r in rows]

    def entities(self, prefix: str, after: str | None, limit: int) -> list[str]:
        # Two ordered scans of the subject and object indexes, merged by the compound
        # SELECT (UNION drops the duplicates): a page reads about `limit` entries of each.
        # SQLite compares TEXT by its UTF-8 bytes, which is code point order.
        end = prefix_end(prefix)
        arms = []
        params: list[Any] = []
        for column in ("subject", "object"):
            where = [f"{column} >= ?"]
            params.append(prefix)
            if after is not None:
                where.append(f"{column} > ?")
                params.append(after)
            if end is not None:
                where.append(f"{column} < ?")
                params.append(end)
            arms.append(f"SELECT {column} FROM nodes WHERE deleted=0 AND {' AND '.join(where)}")
        rows = self._reader().execute(
            f"{arms[0]} UNION {arms[1]} ORDER BY 1 LIMIT ?", (*params, limit)
        )
        return [r[0] for r in rows]

    def predicate_counts(self, name: str) -> dict[str, int]:
        rows = self._reader().execute(
            # Two index searches; UNION over (id, predicate) counts a fact with the name
            # as subject and object once.
            "SELECT predicate, count(*) FROM (SELECT id, predicate FROM nodes "
            "WHERE deleted=0 AND subject=? UNION SELECT id, predicate FROM nodes "
            "WHERE deleted=0 AND object=?) GROUP BY predicate",
            (name, name),
        )
        return {p: n for p, n in rows}

    def facts_around(
        self, names: Sequence[str], role: str, predicates: Sequence[str] | None, width: int
    ) -> tuple[list[Node], dict[str, int]]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        if not names:
            return [], {}
        only = ""
        if predicates is not None:
            # `+`: the predicate filters the window's rows; its index would read them all.
            only = f" AND +n.predicate IN ({', '.join(['?'] * len(predicates))})"
        rows: list[Node] = []
        ends: dict[str, int] = {}
        conn = self._reader()
        for first in range(0, len(names), AROUND_CHUNK):
            chunk = names[first : first + AROUND_CHUNK]
            query = AROUND.format(
                names=", ".join(["(?)"] * len(chunk)), role=role, no_end=NO_END, predicates=only
            )
            params = [*chunk, width - 1, *(predicates or ())]
            for kind, *row in conn.execute(query, params):
                if kind == 0:
                    ends[row[1]] = row[0]
                else:
                    rows.append(Node(*row))
        if len(names) > AROUND_CHUNK:
            rows.sort(key=lambda r: r.node_id)
        return rows, ends
