"""llmkg: allocation service for language-model knowledge graphs.

The performance core is the Rust extension ``llmkg._core``; this package re-exports it.
"""

from llmkg._core import __version__, embed_fact, embed_facts, embed_text, embed_texts

__all__ = ["__version__", "embed_fact", "embed_facts", "embed_text", "embed_texts"]
