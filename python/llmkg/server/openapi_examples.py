"""Examples of each route, as the OpenAPI document carries them.

They are taken from a server on the built-in defaults (``make run``: no authentication),
and they are data, not prose, so that they have one home: the OpenAPI document serves
them (``examples`` of the request body and of the answer, the request's URL as the
example's ``x-request``), the HTTP reference page (``llmkg.server.openapi_docs``)
renders them, and tests/test_openapi_docs.py checks each one against the types the
server decodes and encodes: an example cannot go on showing a field that is gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Example:
    name: str  # the key in the OpenAPI ``examples`` maps, unique within its route
    summary: str
    url: str  # the path and query string sent
    answer: Any  # the JSON answer (NDJSON: its lines, as one string)
    body: Any = None  # the JSON body sent, if any
    status: int = 200
    description: str = ""


def _node(node_id: int, fact: str, confidence: float, parent: int | None) -> dict[str, Any]:
    subject, predicate, obj = fact.split()
    return {
        "node_id": node_id,
        "fact": {
            "subject": subject,
            "predicate": predicate,
            "object": obj,
            "confidence": confidence,
        },
        "parent": parent,
    }


def _hit(score: float, node: dict[str, Any]) -> dict[str, Any]:
    return {"node_id": node["node_id"], "score": score, **node}


def _invalid(field: str, message: str) -> dict[str, Any]:
    return {"error": {"code": "invalid_field", "message": message, "field": field}}


# The graph examples' data: five facts allocated in this order (node ids 1 to 5).
GRAPH_FACTS = "`Pho is_a dog`, `Pho likes Mia`, `Mia is_a cat`, `Mia likes Pho`, `Rex is_a dog`"
_ON_GRAPH = f"On the graph examples' facts ({GRAPH_FACTS}, node ids 1 to 5)."

_PHO = _node(1, "Pho is_a dog", 0.9, None)
_REX = _node(2, "Rex is_a dog", 0.8, None)
_PHO_LIKES = _node(2, "Pho likes Mia", 0.8, 1)
_REX_5 = _node(5, "Rex is_a dog", 0.5, 1)

EXAMPLES: dict[tuple[str, str], list[Example]] = {
    ("post", "/api/v1/allocate"): [
        Example(
            "created",
            "One fact, embedded by the built-in embedder",
            "/api/v1/allocate",
            {
                "node_id": 1,
                "partition": 0,
                "parent": None,
                "neighbors": [],
                "strategy": "direct",
                "precision": "full",
                "confidence": 0.9,
                "created": True,
                "processing_time_ms": 1.31,
            },
            body={
                "fact": {"subject": "Pho", "predicate": "is_a", "object": "dog", "confidence": 0.9}
            },
            description="The first fact: no parent, no neighbors. `embedding` (a list of "
            "`scalability.hnsw.dimension` floats) is optional. Allocating the same triple "
            'again answers the same node with `"created": false`.',
        ),
        Example(
            "out_of_range",
            "A field out of its range",
            "/api/v1/allocate",
            _invalid("fact.confidence", "Expected `float` <= 1.0"),
            body={
                "fact": {"subject": "Pho", "predicate": "is_a", "object": "dog", "confidence": 1.5}
            },
            status=422,
        ),
    ],
    ("post", "/api/v1/allocate/batch"): [
        Example(
            "two",
            "Two facts, answered in input order",
            "/api/v1/allocate/batch",
            {
                "results": [
                    {
                        "node_id": 2,
                        "partition": 0,
                        "parent": None,
                        "neighbors": [{"node_id": 1, "similarity": 0.632}],
                        "strategy": "direct",
                        "precision": "full",
                        "confidence": 0.8,
                        "created": True,
                        "processing_time_ms": 0.82,
                    },
                    {
                        "node_id": 3,
                        "partition": 0,
                        "parent": None,
                        "neighbors": [
                            {"node_id": 1, "similarity": 0.243},
                            {"node_id": 2, "similarity": 0.243},
                        ],
                        "strategy": "direct",
                        "precision": "full",
                        "confidence": 0.7,
                        "created": True,
                        "processing_time_ms": 1.12,
                    },
                ]
            },
            body={
                "facts": [
                    {"subject": "Rex", "predicate": "is_a", "object": "dog", "confidence": 0.8},
                    {"subject": "Tom", "predicate": "is_a", "object": "cat", "confidence": 0.7},
                ]
            },
            description="After the allocate example.",
        ),
    ],
    ("post", "/api/v1/search"): [
        Example(
            "filtered",
            "By text, with a filter",
            "/api/v1/search",
            {
                "results": [
                    _hit(0.6468, _PHO),
                    _hit(0.6468, _REX),
                ]
            },
            body={
                "query": {
                    "text": "a dog",
                    "k": 2,
                    "filter": {"predicate": "is_a", "min_confidence": 0.5},
                }
            },
            description="After the allocate examples. Each hit has its node's `fact` and "
            "`parent`, as `GET /api/v1/nodes/{node_id}` answers them.",
        ),
        Example(
            "expanded",
            "Graph-expanded: the facts connected to the hits",
            "/api/v1/search",
            {
                "results": [_hit(0.9147, _node(5, "Rex is_a dog", 0.5, None))],
                "expanded": [
                    {**_PHO, "hop": 1, "source": 5},
                    {**_node(2, "Pho likes Mia", 0.8, None), "hop": 2, "source": 5},
                    {**_node(4, "Mia likes Pho", 0.6, 2), "hop": 2, "source": 5},
                ],
                "truncated": False,
                "capped": False,
            },
            body={"query": {"text": "Rex is a dog", "k": 1, "expand": {"hops": 2, "max_facts": 3}}},
            description=_ON_GRAPH,
        ),
    ],
    ("get", "/api/v1/nodes/{node_id}"): [
        Example("found", "A node", "/api/v1/nodes/1", _PHO),
        Example(
            "deleted",
            "A deleted node",
            "/api/v1/nodes/3",
            {"error": {"code": "not_found", "message": "no node 3", "field": "node_id"}},
            status=404,
            description="After the delete example.",
        ),
    ],
    ("delete", "/api/v1/nodes/{node_id}"): [
        Example("deleted", "Delete a node", "/api/v1/nodes/3", {"node_id": 3, "deleted": True}),
    ],
    ("get", "/api/v1/facts"): [
        Example(
            "first_page",
            "A pattern, first page",
            "/api/v1/facts?predicate=is_a&limit=2",
            {"facts": [_PHO, _node(3, "Mia is_a cat", 0.7, 2)], "next_cursor": "bjM"},
            description=_ON_GRAPH,
        ),
        Example(
            "next_page",
            "The next page: next_cursor passed back as cursor",
            "/api/v1/facts?predicate=is_a&limit=2&cursor=bjM",
            {"facts": [_REX_5], "next_cursor": None},
        ),
        Example(
            "bad_limit",
            "A parameter out of its range",
            "/api/v1/facts?limit=0",
            _invalid("limit", "must be an integer from 1 to 1000"),
            status=422,
        ),
    ],
    ("get", "/api/v1/entities"): [
        Example(
            "page",
            "A page of names",
            "/api/v1/entities?limit=2",
            {"entities": ["Mia", "Pho"], "next_cursor": "ZVBobw"},
            description=_ON_GRAPH,
        ),
    ],
    ("get", "/api/v1/entities/{name}"): [
        Example(
            "pho",
            "The facts that mention Pho",
            "/api/v1/entities/Pho?limit=1",
            {
                "name": "Pho",
                "as_subject": [_PHO],
                "as_subject_next_cursor": "bjE",
                "as_object": [_node(4, "Mia likes Pho", 0.6, 2)],
                "as_object_next_cursor": None,
                "predicates": {"is_a": 1, "likes": 2},
            },
            description=_ON_GRAPH + " `predicates` counts every live fact that mentions "
            "the name, not only the pages'.",
        ),
    ],
    ("get", "/api/v1/nodes/{node_id}/children"): [
        Example(
            "children",
            "A node's children",
            "/api/v1/nodes/1/children",
            {"node_id": 1, "children": [_PHO_LIKES, _REX_5], "next_cursor": None},
            description=_ON_GRAPH,
        ),
    ],
    ("get", "/api/v1/nodes/{node_id}/ancestors"): [
        Example(
            "chain",
            "A node's ancestors, nearest first",
            "/api/v1/nodes/4/ancestors",
            {"node_id": 4, "ancestors": [_PHO_LIKES, _PHO]},
            description=_ON_GRAPH,
        ),
        Example(
            "after_delete",
            "After its grandparent was deleted",
            "/api/v1/nodes/4/ancestors",
            {"node_id": 4, "ancestors": [_node(2, "Pho likes Mia", 0.8, None)]},
            description="After `DELETE /api/v1/nodes/1`: deleting a node gives its children "
            "its own parent (here none: node 1 was a root).",
        ),
    ],
    ("post", "/api/v1/traverse"): [
        Example(
            "two_hops",
            "Two hops out of an entity",
            "/api/v1/traverse",
            {
                "facts": [
                    {**_PHO, "hop": 1},
                    {**_node(2, "Pho likes Mia", 0.8, None), "hop": 1},
                    {**_node(3, "Mia is_a cat", 0.7, None), "hop": 2},
                    {**_node(4, "Mia likes Pho", 0.6, 2), "hop": 2},
                ],
                "truncated": False,
                "capped": False,
            },
            body={"start": {"entities": ["Pho"]}, "hops": 2},
            description=_ON_GRAPH + " Mia's `likes Pho` ends at Pho, visited already: hop 3 "
            "would start from `cat` alone.",
        ),
        Example(
            "from_a_node",
            "From a node, both directions, truncated",
            "/api/v1/traverse",
            {
                "facts": [
                    {**_node(5, "Rex is_a dog", 0.5, None), "hop": 0},
                    {**_PHO, "hop": 1},
                    {**_node(2, "Pho likes Mia", 0.8, None), "hop": 2},
                ],
                "truncated": True,
                "capped": False,
            },
            body={"start": {"nodes": [5]}, "hops": 2, "direction": "both", "max_facts": 3},
            description="Hop 0 is the start node's own fact.",
        ),
        Example(
            "inbound",
            "Inbound, one predicate",
            "/api/v1/traverse",
            {
                "facts": [{**_PHO, "hop": 1}, {**_node(5, "Rex is_a dog", 0.5, None), "hop": 1}],
                "truncated": False,
                "capped": False,
            },
            body={"start": {"entities": ["dog"]}, "direction": "in", "predicates": ["is_a"]},
        ),
        Example(
            "too_many_hops",
            "Past the most hops",
            "/api/v1/traverse",
            _invalid("hops", "Expected `int` <= 3"),
            body={"start": {"entities": ["Pho"]}, "hops": 4},
            status=422,
        ),
    ],
    ("get", "/api/v1/export"): [
        Example(
            "export",
            "Every live fact, one a line",
            "/api/v1/export",
            '{"id":1,"subject":"Pho","predicate":"is_a","object":"dog","confidence":0.9,'
            '"parent":null}\n'
            '{"id":3,"subject":"Pho","predicate":"likes","object":"walks","confidence":0.7,'
            '"parent":{"id":1,"subject":"Pho","predicate":"is_a","object":"dog"}}\n',
            description="`embedding=true` adds each stored vector.",
        ),
    ],
    ("get", "/api/v1/stats"): [
        Example(
            "stats",
            "The engine's statistics",
            "/api/v1/stats",
            {
                "nodes": 2,
                "partition": 0,
                "strategy": "direct",
                "index": {
                    "len": 2,
                    "deleted": 1,
                    "memory_bytes": 50507,
                    "top_level": 0,
                    "precisions": {"full": 3, "q8": 0, "q4": 0, "binary": 0},
                    "kernels": "avx512f+vnni",
                },
                "store": {
                    "last_seq": 4,
                    "commits": 5,
                    "writes": 5,
                    "wal_bytes": 160712,
                    "failed_writes": 0,
                    "last_error": None,
                },
                "inserts": {
                    "nodes": 3,
                    "batches": 3,
                    "pending": 0,
                    "failing": False,
                    "failed_links": 0,
                    "last_error": None,
                    "detail": "0 pending, 0 failed links",
                },
                "snapshot_seq": 4,
                "startup": {
                    "source": "rebuild",
                    "warmed_up": 0,
                    "snapshot_seq": 0,
                    "replayed": 0,
                    "seconds": 0.18,
                },
                "cache": {
                    "enabled": True,
                    "l1_hit_rate": 0.8,
                    "l2_hit_rate": 0.0,
                    "l1_entries": 2,
                    "l2_entries": 2,
                    "store_reads": 0,
                },
                "memory": {
                    "resident_bytes": 338882560,
                    "budget_bytes": 25276203008,
                    "pressure_threshold": 0.85,
                    "under_pressure": False,
                },
            },
            description="Node count, index (length, removed nodes, memory, precisions, the "
            "distance kernels in use), store (last sequence, commits, failed writes), the "
            "linker, the start-up (`source`: snapshot or rebuild, replayed writes, seconds), "
            "caches and memory.",
        ),
    ],
    ("post", "/api/v1/admin/checkpoint"): [
        Example(
            "checkpoint",
            "A snapshot now: its store sequence",
            "/api/v1/admin/checkpoint",
            {"sequence": 4},
        ),
    ],
    ("post", "/api/v1/admin/backup"): [
        Example(
            "backup",
            "A backup: its folder, node count and store sequence",
            "/api/v1/admin/backup",
            {"path": "/var/lib/llmkg/backup/20261204T211738.022000Z", "nodes": 2, "store_seq": 4},
        ),
    ],
    ("post", "/api/v1/auth/refresh"): [
        Example(
            "refresh",
            "A new access token",
            "/api/v1/auth/refresh",
            {"access_token": "eyJ...", "token_type": "Bearer", "expires_in": 86400},
            body={"refresh_token": "eyJ..."},
            description="With JWT authentication only.",
        ),
    ],
    ("get", "/health/live"): [
        Example("live", "Alive", "/health/live", {"status": "ok", "checks": {}, "partition": {}}),
    ],
    ("get", "/health/ready"): [
        Example(
            "ready",
            "Ready, with every check",
            "/health/ready",
            {
                "status": "ready",
                "checks": {
                    "checkpoint": {"ok": True, "detail": "ok"},
                    "store": {"ok": True, "detail": "sequence 0, 0 writes failed"},
                    "linker": {"ok": True, "detail": "0 pending, 0 failed links"},
                    "index": {"ok": True, "detail": "0 nodes"},
                    "cache": {"ok": True, "detail": "hit rate l1 0.000, l2 0.000"},
                    "partition": {"ok": True, "detail": "single partition 0 of 1"},
                    "memory": {
                        "ok": True,
                        "detail": "resident 337321984 bytes, pressure threshold 21484772556 bytes",
                    },
                },
                "partition": {
                    "id": 0,
                    "count": 1,
                    "mode": "single-partition",
                    "distributed": False,
                    "note": "",
                },
            },
        ),
    ],
}
