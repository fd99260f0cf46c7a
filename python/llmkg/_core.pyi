"""Type stubs of the Rust extension module ``llmkg._core``."""

__version__: str
