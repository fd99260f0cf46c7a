"""Type stubs of the Rust extension module ``llmkg._core``."""

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

# PyO3 lists every added name in the runtime `__all__`, and stubtest compares it: each
# section below extends this list with its own names.
__all__ = ["__version__"]

__version__: str

# --- embedder ---
__all__ += ["embed_fact", "embed_facts", "embed_text", "embed_texts"]

def embed_text(text: str, dim: int = 768) -> npt.NDArray[np.float32]: ...
def embed_fact(
    subject: str, predicate: str, object: str, dim: int = 768
) -> npt.NDArray[np.float32]: ...
def embed_texts(texts: Iterable[str], dim: int = 768) -> npt.NDArray[np.float32]: ...
def embed_facts(
    facts: Iterable[tuple[str, str, str] | Sequence[str]], dim: int = 768
) -> npt.NDArray[np.float32]: ...

# --- end embedder ---
