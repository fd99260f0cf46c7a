"""The JSON API's handlers. Bodies are read with a size cap and decoded by msgspec into
the types of ``models``; the engine validates what only it knows (embedding length, text
length, batch size) and names the field of anything it refuses."""

from __future__ import annotations

import re
import time
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from llmkg._core import IndexBusyError
from llmkg.engine import AllocationResult, ExpandedFact, Node, SearchHit
from llmkg.server import models as m
from llmkg.server.errors import ApiError
from llmkg.server.state import ServerState
from llmkg.store import BackupUnsupportedError
from llmkg.validation import error_location

T = TypeVar("T")

_DECODERS: dict[type, msgspec.json.Decoder[Any]] = {}
# Searches at most this large run on the event loop (about a millisecond of work).
INLINE_MAX_K = 100
INLINE_MAX_EF = 1000
_ENCODER = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_ENCODER.encode(body), status_code=status, media_type="application/json")


async def read_json(request: Request, kind: type[T], limit: int) -> T:
    """The body as ``kind``: 415 unless JSON, 413 past ``limit`` bytes, 400 when it is not
    JSON, 422 naming the field that does not fit."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "the body must be JSON (Content-Type: application/json)")
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, f"the body is larger than server.max_body_size ({limit} bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"the body is larger than server.max_body_size ({limit} bytes)")
        chunks.append(chunk)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        decoder = _DECODERS[kind] = msgspec.json.Decoder(kind)
    try:
        body: T = decoder.decode(b"".join(chunks))
        return body
    except msgspec.ValidationError as e:
        field, reason = error_location(e)
        raise ApiError(422, reason, code="invalid_field", field=field or None) from None
    except msgspec.DecodeError as e:
        raise ApiError(400, f"the body is not valid JSON: {e}", code="invalid_json") from None


def _fact(fact: m.FactIn) -> dict[str, Any]:
    out = msgspec.structs.asdict(fact)
    if out["embedding"] is None:
        del out["embedding"]
    return out


def _fact_out(node: Node) -> m.FactOut:
    return m.FactOut(node.subject, node.predicate, node.object, node.confidence)


def _hit(h: SearchHit) -> m.SearchHit:
    return m.SearchHit(h.node_id, h.score, _fact_out(h.node), h.node.parent)


def _expanded(e: ExpandedFact) -> m.ExpandedFact:
    return m.ExpandedFact(e.node.node_id, _fact_out(e.node), e.node.parent, e.hop, e.source)


def _allocation(r: AllocationResult) -> m.Allocation:
    def neighbor(n: Any) -> m.Neighbor:
        return m.Neighbor(n.node_id, n.similarity)

    return m.Allocation(
        node_id=r.node_id,
        partition=r.partition,
        parent=None if r.parent is None else neighbor(r.parent),
        neighbors=[neighbor(n) for n in r.neighbors],
        strategy=r.strategy,  # type: ignore[arg-type]
        precision=r.precision,  # type: ignore[arg-type]
        confidence=r.confidence,
        created=r.created,
        processing_time_ms=r.processing_time_ms,
    )


# Node ids are 1 to 2^53 - 1 (the models' NodeId: integers every JSON client reads
# exactly), written in ASCII digits. Anything else in the path is 422, also ids past the
# range, which no node can have: the same answer however large, with no int() of
# thousands of digits (CPython refuses those) and no overflow in the engine's u64.
_NODE_ID = re.compile(r"0*([1-9][0-9]{0,15})", re.ASCII)
MAX_NODE_ID = 2**53 - 1


def node_id_param(request: Request) -> int:
    # Not str.isdigit()/int() alone: they take superscripts and non-ASCII digits ("²",
    # "١٢"), which then fail in int() or name another id.
    match = _NODE_ID.fullmatch(request.path_params["node_id"])
    node_id = int(match[1]) if match else 0
    if not 1 <= node_id <= MAX_NODE_ID:
        raise ApiError(
            422,
            "must be an integer from 1 to 2^53 - 1 in ASCII digits",
            code="invalid_field",
            field="node_id",
        )
    return node_id


class Api:
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.limit = state.settings.server.max_body_size

    async def allocate(self, request: Request) -> Response:
        body = await read_json(request, m.AllocateRequest, self.limit)
        engine = self.state.ready_engine()
        started = time.perf_counter()
        router = self.state.router
        if router is not None:
            result = await router.allocate(_fact(body.fact))
        else:
            result = await self.state.run(engine.allocate, _fact(body.fact))
        self.state.metrics.allocation_latency.observe(time.perf_counter() - started)
        return json_response(_allocation(result))

    async def allocate_batch(self, request: Request) -> Response:
        body = await read_json(request, m.AllocateBatchRequest, self.limit)
        engine = self.state.ready_engine()
        facts = [_fact(f) for f in body.facts]
        router = self.state.router
        if router is not None:
            results = await router.allocate_many(facts)
        else:
            results = await self.state.run(engine.allocate_many, facts)
        for r in results:
            self.state.metrics.allocation_latency.observe(r.processing_time_ms / 1000)
        return json_response(m.AllocateBatchResponse([_allocation(r) for r in results]))

    async def search(self, request: Request) -> Response:
        body = await read_json(request, m.SearchRequest, self.limit)
        q = body.query
        engine = self.state.ready_engine()
        flt = None
        if q.filter is not None:
            flt = {k: v for k, v in msgspec.structs.asdict(q.filter).items() if v is not None}
        args: dict[str, Any] = {
            "embedding": q.embedding,
            "text": q.text,
            "k": q.k,
            "ef": q.ef,
            "filter": flt or None,
        }
        router, node = self.state.router, self.state.node
        if router is not None and node is not None:
            graph = node.graph
            expansion = None
            if q.expand is not None:
                fields = msgspec.structs.asdict(q.expand).items()
                expansion = graph._expansion({k: v for k, v in fields if v is not None})
            routed = await router.search(**args, allow_partial=body.allow_partial)
            answered = m.PartitionsAnswered(routed.total, routed.answered)
            if expansion is None:
                return json_response(
                    m.SearchResponse([_hit(h) for h in routed.hits], partitions=answered)
                )
            # The hits' neighbourhoods, from the database (every partition).
            expanded, truncated, capped = await self.state.run(
                graph._expand, routed.hits, *expansion
            )
            return json_response(
                m.SearchResponse(
                    [_hit(h) for h in routed.hits],
                    [_expanded(e) for e in expanded],
                    truncated,
                    capped,
                    partitions=answered,
                )
            )
        if q.expand is not None:
            # Never on the event loop: the expansion reads the store.
            expand = {k: v for k, v in msgspec.structs.asdict(q.expand).items() if v is not None}
            found = await self.state.run(lambda: engine.search(**args, expand=expand))
            return json_response(
                m.SearchResponse(
                    [_hit(h) for h in found.hits],
                    [_expanded(e) for e in found.expanded],
                    found.truncated,
                    found.capped,
                )
            )
        hits: list[SearchHit] | None = None
        # Not when following a shared store: the catch-up reads the database first.
        if q.k <= INLINE_MAX_K and (q.ef or 0) <= INLINE_MAX_EF and engine.follower is None:
            # A bounded search costs less than the hop to a worker thread and back (and
            # the GIL contention of one more thread): it runs on the event loop, unless a
            # writer holds the index (a snapshot's encoding does not; an insert's slot
            # allocation, a compaction's end and a precision change do): then it goes to
            # a worker, which may wait, and the loop goes on serving.
            try:
                hits = engine.search(**args, wait=False)
            except IndexBusyError:
                self.state.metrics.searches_deferred.inc()
        if hits is None:
            hits = await self.state.run(engine.search, **args)
        return json_response(m.SearchResponse([_hit(h) for h in hits]))

    async def get_node(self, request: Request) -> Response:
        node_id = node_id_param(request)
        engine = self.state.ready_engine()
        router = self.state.router
        if router is not None:
            node = await router.get(node_id)
        else:
            node = await self.state.run(engine.get, node_id)
        if node is None:
            raise ApiError(404, f"no node {node_id}", field="node_id")
        return json_response(m.NodeResponse(node.node_id, _fact_out(node), node.parent))

    async def delete_node(self, request: Request) -> Response:
        node_id = node_id_param(request)
        engine = self.state.ready_engine()
        router = self.state.router
        deleted = (
            await router.delete(node_id)
            if router is not None
            else await self.state.run(engine.delete, node_id)
        )
        if not deleted:
            raise ApiError(404, f"no node {node_id}", field="node_id")
        return json_response(m.DeleteResponse(node_id, True))

    async def stats(self, request: Request) -> Response:
        engine = self.state.ready_engine()
        stats = await self.state.run(engine.stats)
        return json_response(stats)

    async def checkpoint(self, request: Request) -> Response:
        engine = self.state.ready_engine()
        seq = await self.state.run(engine.checkpoint)
        return json_response(m.CheckpointResponse(seq))

    async def backup(self, request: Request) -> Response:
        engine = self.state.ready_engine()
        try:
            folder = await self.state.run(engine.backup)
        except BackupUnsupportedError as e:
            raise ApiError(409, str(e), code="backup_unsupported") from None
        manifest = msgspec.json.decode((folder / "manifest.json").read_bytes())
        return json_response(
            m.BackupResponse(str(folder), manifest["nodes"], manifest["store_seq"])
        )
