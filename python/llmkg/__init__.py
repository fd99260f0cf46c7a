"""llmkg: allocation service for language-model knowledge graphs.

The performance core is the Rust extension ``llmkg._core``; this package re-exports it.
"""

from llmkg._core import (
    MISSING_ID,
    CorruptIndexError,
    HnswIndex,
    IdFilter,
    __version__,
)

__all__ = [
    "MISSING_ID",
    "CorruptIndexError",
    "HnswIndex",
    "IdFilter",
    "__version__",
]
