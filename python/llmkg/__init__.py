"""llmkg: allocation service for language-model knowledge graphs.

The performance core is the Rust extension ``llmkg._core``; this package re-exports it.
"""

from llmkg._core import (
    MISSING_ID,
    CorruptIndexError,
    HnswIndex,
    IdFilter,
    IndexBusyError,
    ManualClock,
    ShardedCache,
    TieredCache,
    __version__,
    embed_fact,
    embed_facts,
    embed_text,
    embed_texts,
)

__all__ = [
    "MISSING_ID",
    "CorruptIndexError",
    "HnswIndex",
    "IdFilter",
    "IndexBusyError",
    "ManualClock",
    "ShardedCache",
    "TieredCache",
    "__version__",
    "embed_fact",
    "embed_facts",
    "embed_text",
    "embed_texts",
]
