"""The two embedded peers of bench_engine.py behind one small interface.

Each peer is driven the way its API is meant to be used: a bulk insert in batches, and,
to set beside llmkg's one-fact-per-call `allocate`, single-point inserts from 8 threads.
Both are opened on a temporary directory, closed and opened again to time a restart.

Both peers and llmkg's engine (bench_engine.py sets it) are built with the same settings:
cosine, HNSW m=16, ef_construction=200, search ef=100.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np

M = 16
EF_CONSTRUCTION = 200
EF_SEARCH = 100


class QdrantEdgePeer:
    """qdrant-edge-py: an in-process Qdrant shard (`EdgeShard`) in a local folder.

    The shard indexes nothing by itself: new points land in an appendable segment that is
    scanned exactly, and `optimize()` builds the HNSW index. The bulk insert therefore
    times upsert + optimize + flush, so that its search runs on an HNSW graph as llmkg's
    does; the 8-thread single-point insert times upsert + a final flush only (no index)."""

    name = "qdrant-edge-py"

    def __init__(self, path: Path, dim: int) -> None:
        import qdrant_edge as qe

        self.qe = qe
        self.path = path
        self.dim = dim
        self.shard: Any = qe.EdgeShard.create(str(path), self._config())
        self.params = qe.SearchParams(hnsw_ef=EF_SEARCH)

    def _config(self) -> Any:
        qe = self.qe
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(size=self.dim, distance=qe.Distance.Cosine),
            hnsw_config=qe.HnswIndexConfig(
                m=M, ef_construct=EF_CONSTRUCTION, full_scan_threshold=10_000
            ),
        )

    @staticmethod
    def version() -> str:
        from importlib.metadata import version

        return version("qdrant-edge-py")

    def _points(self, ids: np.ndarray, vectors: np.ndarray, payloads: list[dict]) -> list:
        qe = self.qe
        return [
            qe.Point(int(i), v.tolist(), p) for i, v, p in zip(ids, vectors, payloads, strict=False)
        ]

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, payloads: list[dict]) -> None:
        op = self.qe.UpdateOperation.upsert_points(self._points(ids, vectors, payloads))
        self.shard.update(op)

    def finish_bulk(self) -> None:
        self.shard.optimize()
        self.shard.flush()

    def finish_single(self) -> None:
        self.shard.flush()

    def search(self, query: np.ndarray, k: int) -> list[int]:
        qe = self.qe
        req = qe.SearchRequest(
            query=qe.Query.Nearest(query.tolist()),
            limit=k,
            params=self.params,
            with_payload=False,
        )
        return [int(p.id) for p in self.shard.search(req)]

    def info(self) -> str:
        info = self.shard.info()
        return (
            f"{info.points_count:,} points, {info.indexed_vectors_count:,} in HNSW, "
            f"{info.segments_count} segments"
        )

    def close(self) -> None:
        self.shard.close()
        self.shard = None
        gc.collect()

    def reopen(self) -> None:
        self.shard = self.qe.EdgeShard.load(str(self.path))


class ChromaPeer:
    """chromadb's PersistentClient, one collection with `hnsw:space = cosine`.

    Chroma logs each `add` and indexes it in the same call, so a returned add is
    searchable; batches are cut at the client's `get_max_batch_size()`."""

    name = "chromadb"

    def __init__(self, path: Path, dim: int) -> None:
        import chromadb

        self.chromadb = chromadb
        self.path = path
        self.dim = dim
        self.client: Any = chromadb.PersistentClient(path=str(path))
        self.collection: Any = self.client.create_collection(
            "bench",
            metadata={
                "hnsw:space": "cosine",
                "hnsw:M": M,
                "hnsw:construction_ef": EF_CONSTRUCTION,
                "hnsw:search_ef": EF_SEARCH,
            },
        )
        self.max_batch = int(self.client.get_max_batch_size())

    @staticmethod
    def version() -> str:
        import chromadb

        return str(chromadb.__version__)

    def upsert(self, ids: np.ndarray, vectors: np.ndarray, payloads: list[dict]) -> None:
        for start in range(0, len(ids), self.max_batch):
            end = start + self.max_batch
            self.collection.add(
                ids=[str(int(i)) for i in ids[start:end]],
                embeddings=vectors[start:end],
                documents=[p["object"] for p in payloads[start:end]],
                metadatas=[
                    {"subject": p["subject"], "predicate": p["predicate"]}
                    for p in payloads[start:end]
                ],
            )

    def finish_bulk(self) -> None:
        pass

    def finish_single(self) -> None:
        pass

    def search(self, query: np.ndarray, k: int) -> list[int]:
        got = self.collection.query(query_embeddings=query[None, :], n_results=k, include=[])
        return [int(i) for i in got["ids"][0]]

    def info(self) -> str:
        return f"{self.collection.count():,} items, max batch {self.max_batch:,}"

    def close(self) -> None:
        # The client caches one "system" per path; without clearing it a new client on the
        # same path would reuse the open one, and the restart would time nothing.
        self.collection = None
        self.client = None
        self.chromadb.api.client.SharedSystemClient.clear_system_cache()
        gc.collect()

    def reopen(self) -> None:
        self.client = self.chromadb.PersistentClient(path=str(self.path))
        self.collection = self.client.get_collection("bench")


PEERS = {"qdrant-edge-py": ("qdrant_edge", QdrantEdgePeer), "chromadb": ("chromadb", ChromaPeer)}
