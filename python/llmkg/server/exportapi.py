"""``GET /api/v1/export``: every live fact as NDJSON (``llmkg.engine.exchange``'s format),
streamed a page at a time.

Each page is read (and encoded) on the worker pool, then sent; the next is read only once
the client has taken the last (uvicorn waits for the socket to drain), so an export holds
one page in memory however large the store, and a slow client slows its own export only.
The first page is read before the answer starts, so that a store that cannot be read
answers 503 as for any route. A failure after that cannot change the status any more:
the connection is closed without the end of the chunked body, which HTTP clients report
as an incomplete answer (it is never a complete-looking one).

Scope ``read``: a token that can read can page through every fact with
``GET /api/v1/facts`` already, and this is the same data in one answer (an answer that
``server.request_timeout`` does not cut: it bounds the first page only)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from llmkg.engine.exchange import MEDIA_TYPE, export_page
from llmkg.server.errors import ApiError
from llmkg.server.graphapi import query
from llmkg.server.state import ServerState
from llmkg.store import Store

log = logging.getLogger("llmkg.server")

PARAMETERS = frozenset({"embedding"})
Page = tuple[bytes, int, int | None]


def _flag(params: dict[str, str], field: str) -> bool:
    raw = params.get(field, "false")
    if raw not in ("true", "false"):
        raise ApiError(422, "must be true or false", code="invalid_field", field=field)
    return raw == "true"


class ExportApi:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    async def export(self, request: Request) -> Response:
        params = query(request, PARAMETERS)
        embeddings = _flag(params, "embedding")
        store = self.state.graph_reads().store
        first = await self.state.run(export_page, store, 0, embeddings)
        return StreamingResponse(
            self._pages(store, first, embeddings),
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store"},
        )

    async def _pages(self, store: Store, first: Page, embeddings: bool) -> AsyncIterator[bytes]:
        data, sent, after = first
        try:
            if data:
                yield data
            while after is not None:
                data, count, after = await self.state.run(export_page, store, after, embeddings)
                sent += count
                if data:
                    yield data
        except Exception:
            # Re-raised: the server then closes the connection before the body's end, so
            # that the client cannot take the part for the whole.
            log.warning("export cut off after %d facts", sent, exc_info=True)
            raise
