"""Type stubs of the Rust extension module ``llmkg._core``."""

from collections.abc import Iterable, Sequence
from os import PathLike
from typing import Any, Literal, TypeAlias, final

import numpy as np
import numpy.typing as npt

__version__: str

# --- index ---

MISSING_ID: int
"""Id filling result slots when fewer than ``k`` nodes match (``2**64 - 1``)."""

class CorruptIndexError(ValueError):
    """A saved index file is truncated, corrupted or not an llmkg index."""

_PrecisionName: TypeAlias = Literal["full", "q8", "q4", "binary"]
_IdsLike: TypeAlias = npt.ArrayLike | int

@final
class IdFilter:
    """A reusable set of allowed ids for filtered search."""

    def __new__(cls, ids: _IdsLike) -> IdFilter: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...

@final
class HnswIndex:
    """An HNSW index over float32 vectors with per-node precision."""

    def __new__(
        cls,
        dim: int,
        metric: Literal["cosine", "ip", "l2"] = "cosine",
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 100,
        seed: int = 42,
        keep_full: bool = True,
    ) -> HnswIndex: ...
    def add(
        self,
        ids: _IdsLike,
        vectors: npt.ArrayLike,
        precision: _PrecisionName | Sequence[_PrecisionName] | None = None,
        threads: int | None = None,
    ) -> None: ...
    def search(
        self,
        queries: npt.ArrayLike,
        k: int = 10,
        ef: int | None = None,
        rescore: bool = True,
        filter: IdFilter | _IdsLike | None = None,
        exact: bool = False,
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]: ...
    def remove(self, ids: _IdsLike) -> int: ...
    def compact(self) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def memory_bytes(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    def set_precision(self, ids: _IdsLike, level: _PrecisionName) -> None: ...
    def precision_of(self, id: int) -> _PrecisionName: ...
    def get_vector(self, id: int) -> npt.NDArray[np.float32]: ...
    def save(self, path: str | PathLike[str]) -> None: ...
    @staticmethod
    def load(path: str | PathLike[str]) -> HnswIndex: ...
    def to_bytes(self) -> bytes: ...
    @staticmethod
    def from_bytes(data: bytes) -> HnswIndex: ...
    @property
    def dim(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def keep_full(self) -> bool: ...

# --- embedder ---

def embed_text(text: str, dim: int = 768) -> npt.NDArray[np.float32]: ...
def embed_fact(
    subject: str, predicate: str, object: str, dim: int = 768
) -> npt.NDArray[np.float32]: ...
def embed_texts(texts: Iterable[str], dim: int = 768) -> npt.NDArray[np.float32]: ...
def embed_facts(
    facts: Iterable[tuple[str, str, str] | Sequence[str]], dim: int = 768
) -> npt.NDArray[np.float32]: ...
