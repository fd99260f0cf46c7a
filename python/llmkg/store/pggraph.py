"""The PostgreSQL store's reads of the graph: triple patterns, children, ancestors and
entities, over the live rows of the partitions in its ``scope`` (indexes: ``pgschema.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmkg.store.pgconn import Connections
from llmkg.store.records import FACT_COLUMNS, NO_END, ROLES, Node, prefix_end

# Up from a node of this partition, by id: a parent may live in another partition.
ANCESTORS = f"""WITH RECURSIVE up(id, depth) AS (
    SELECT parent, 1 FROM llmkg_nodes
    WHERE partition = ANY(%(scope)s) AND id = %(id)s AND NOT deleted AND parent IS NOT NULL
    UNION ALL
    SELECT n.parent, up.depth + 1 FROM up JOIN llmkg_nodes n ON n.id = up.id
    WHERE n.parent IS NOT NULL AND up.depth < %(depth)s)
SELECT {", ".join("n." + c for c in FACT_COLUMNS.split(", "))} FROM up JOIN llmkg_nodes n
    ON n.id = up.id AND NOT n.deleted ORDER BY up.depth"""

# The windows of ``facts_around`` (as in the SQLite store's ``sqlitegraph.py``): each
# name's last id when it has more than the window's width, through the (partition,
# md5(role), id) index in id order, then the facts up to it through the same index.
AROUND = """WITH w AS MATERIALIZED (
    SELECT f.name, (SELECT id FROM llmkg_nodes
        WHERE partition = ANY(%(scope)s) AND NOT deleted AND md5({role}) = md5(f.name)
            AND {role} = f.name
        ORDER BY id OFFSET %(skip)s LIMIT 1) AS last
    FROM unnest(%(names)s::text[]) AS f(name))
SELECT 0, last, name, NULL, NULL, NULL::float8, NULL::bigint FROM w WHERE last IS NOT NULL
UNION ALL
SELECT 1, n.id, n.subject, n.predicate, n.object, n.confidence, n.parent
FROM w JOIN llmkg_nodes n ON n.partition = ANY(%(scope)s) AND NOT n.deleted
    AND md5(n.{role}) = md5(w.name) AND n.{role} = w.name
    AND n.id <= coalesce(w.last, {no_end}){predicates}
ORDER BY 1, 2"""


class GraphReads(Connections):
    """Mixed into ``PostgresStore``, whose pooled reads it uses. ``scope``: the partitions
    the reads cover (the store's own, or every one for a router's view of the graph)."""

    partition: int
    scope: list[int]

    def match(
        self,
        subject: str | None,
        predicate: str | None,
        object: str | None,
        min_confidence: float | None,
        after: int,
        limit: int,
    ) -> list[Node]:
        where = ["partition = ANY(%s)", "NOT deleted", "id > %s"]
        params: list[Any] = [self.scope, after]
        for column, value in (("subject", subject), ("predicate", predicate), ("object", object)):
            if value is not None:
                # The hash finds the index entries; the text settles a collision.
                where.append(f"md5({column}) = md5(%s) AND {column} = %s")
                params += [value, value]
        if min_confidence is not None:
            where.append("confidence >= %s")
            params.append(min_confidence)
        rows = self._rows(
            f"SELECT {FACT_COLUMNS} FROM llmkg_nodes WHERE {' AND '.join(where)} "
            "ORDER BY id LIMIT %s",
            (*params, limit),
        )
        return [Node(*r) for r in rows]

    def children(self, node_id: int, after: int, limit: int) -> list[Node]:
        # In every partition: a child's home is its own triple's, not its parent's.
        rows = self._rows(
            f"SELECT {FACT_COLUMNS} FROM llmkg_nodes WHERE parent = %s "
            "AND NOT deleted AND id > %s ORDER BY id LIMIT %s",
            (node_id, after, limit),
        )
        return [Node(*r) for r in rows]

    def ancestors(self, node_id: int, max_depth: int) -> list[Node]:
        rows = self._read(
            lambda conn: conn.execute(
                ANCESTORS, {"scope": self.scope, "id": node_id, "depth": max_depth}
            ).fetchall()
        )
        return [Node(*r) for r in rows]

    def entities(self, prefix: str, after: str | None, limit: int) -> list[str]:
        # COLLATE "C": code point order (UTF-8 bytes), whatever the database's collation,
        # the same order as SQLite's. No index orders the texts (their B-tree entries
        # would be too large): a page scans the live rows in range.
        end = prefix_end(prefix)
        arms = []
        params: list[Any] = []
        for column in ("subject", "object"):
            name = f'{column} COLLATE "C"'
            where = ["partition = ANY(%s)", "NOT deleted", f"{name} >= %s"]
            params += [self.scope, prefix]
            if after is not None:
                where.append(f"{name} > %s")
                params.append(after)
            if end is not None:
                where.append(f"{name} < %s")
                params.append(end)
            arms.append(f"SELECT {name} AS name FROM llmkg_nodes WHERE {' AND '.join(where)}")
        rows = self._rows(f"{arms[0]} UNION {arms[1]} ORDER BY 1 LIMIT %s", (*params, limit))
        return [r[0] for r in rows]

    def predicate_counts(self, name: str) -> dict[str, int]:
        p = self.scope
        rows = self._rows(
            # UNION over (id, predicate) counts a fact with the name as subject and object
            # once.
            "SELECT predicate, count(*) FROM (SELECT id, predicate FROM llmkg_nodes "
            "WHERE partition = ANY(%s) AND NOT deleted AND md5(subject) = md5(%s) AND subject = %s "
            "UNION SELECT id, predicate FROM llmkg_nodes WHERE partition = ANY(%s) AND NOT deleted "
            "AND md5(object) = md5(%s) AND object = %s) AS mentions GROUP BY predicate",
            (p, name, name, p, name, name),
        )
        return {r[0]: int(r[1]) for r in rows}

    def facts_around(
        self, names: Sequence[str], role: str, predicates: Sequence[str] | None, width: int
    ) -> tuple[list[Node], dict[str, int]]:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}")
        # PostgreSQL's text holds no NUL: no stored fact has such a name, and the driver
        # would refuse to send it.
        names = [n for n in names if "\x00" not in n]
        if predicates is not None:
            predicates = [p for p in predicates if "\x00" not in p]
        if not names:
            return [], {}
        params: dict[str, Any] = {"scope": self.scope, "names": names, "skip": width - 1}
        only = ""
        if predicates is not None:
            only = " AND n.predicate = ANY(%(predicates)s::text[])"
            params["predicates"] = predicates
        query = AROUND.format(role=role, no_end=NO_END, predicates=only)
        found = self._read(lambda conn: conn.execute(query, params).fetchall())
        rows: list[Node] = []
        ends: dict[str, int] = {}
        for kind, *row in found:
            if kind == 0:
                ends[row[1]] = row[0]
            else:
                rows.append(Node(*row))
        return rows, ends
