"""llmkg: allocation service for language-model knowledge graphs.

The performance core is the Rust extension ``llmkg._core``; this package re-exports it.
"""

from llmkg._core import ShardedCache, TieredCache, __version__

__all__ = ["ShardedCache", "TieredCache", "__version__"]
