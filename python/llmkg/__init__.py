"""llmkg: allocation service for language-model knowledge graphs.

The performance core is the Rust extension ``llmkg._core``; this package re-exports it.
``llmkg.Client``, ``llmkg.AsyncClient`` and ``llmkg.ApiError`` (the HTTP API's client,
``llmkg.client``) are imported on first use: the embedded engine's users do not pay
for an HTTP stack.
"""

from typing import TYPE_CHECKING

from llmkg._core import (
    MISSING_ID,
    CorruptIndexError,
    FactFilter,
    FactIndex,
    HnswIndex,
    IdFilter,
    IndexBusyError,
    Linker,
    LinkerError,
    LinkerTimeoutError,
    ManualClock,
    ShardedCache,
    TieredCache,
    __version__,
    embed_fact,
    embed_facts,
    embed_text,
    embed_texts,
)

if TYPE_CHECKING:
    from llmkg.client import ApiError, AsyncClient, Client

_CLIENT_NAMES = frozenset({"ApiError", "AsyncClient", "Client"})

__all__ = [
    "MISSING_ID",
    "ApiError",
    "AsyncClient",
    "Client",
    "CorruptIndexError",
    "FactFilter",
    "FactIndex",
    "HnswIndex",
    "IdFilter",
    "IndexBusyError",
    "Linker",
    "LinkerError",
    "LinkerTimeoutError",
    "ManualClock",
    "ShardedCache",
    "TieredCache",
    "__version__",
    "embed_fact",
    "embed_facts",
    "embed_text",
    "embed_texts",
]


def __getattr__(name: str) -> object:
    if name in _CLIENT_NAMES:
        from llmkg import client

        return getattr(client, name)
    raise AttributeError(f"module 'llmkg' has no attribute {name!r}")
