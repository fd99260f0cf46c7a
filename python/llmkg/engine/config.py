"""The engine's settings. The server's TOML config maps onto these fields; every default
is the embedded default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llmkg._core import CACHE_POLICIES


@dataclass
class EngineConfig:
    # storage
    data_directory: Path = field(default_factory=lambda: Path("data"))  # and snapshots
    store_backend: str = "sqlite"  # or "postgresql": the facts in a shared database
    # whether opening the store may upgrade an older format or schema; False: such a store
    # is refused (StoreOutdatedError) until `llmkg-server migrate` has run
    auto_migrate: bool = True
    # PostgreSQL (store_backend = "postgresql"): a libpq connection string or URI, the
    # size of the connection pool, seconds to connect (and to wait for a pooled
    # connection), seconds a statement may run (0: no limit)
    postgres_dsn: str = field(default="", repr=False)  # repr: it may hold a password
    postgres_pool_size: int = 10
    postgres_connect_timeout: float = 5.0
    postgres_statement_timeout: float = 30.0
    # seconds between polls of a PostgreSQL store for other processes' changes (follow.py)
    follow_interval: float = 0.05
    # seconds a read (or a write, for its own change) waits for this process to apply
    # the store's changes up to the store's last sequence (then NotCaughtUpError: 503)
    catch_up_timeout: float = 5.0
    backup_directory: Path | None = None  # default: <data_directory>-backups, beside it
    backup_retention: int = 7  # backups kept in backup_directory (the newest); 0: all
    durability: str = "fsync"  # or "interval": fsync every `sync_interval` seconds
    sync_interval: float = 1.0
    write_timeout: float = 30.0  # seconds a write waits for its commit (StoreTimeoutError)
    checkpoint_interval: float = 300.0  # seconds between index snapshots; 0: never by time
    # bytes of facts and vectors written since the last snapshot that trigger a new one:
    # it bounds what a restart replays
    max_wal_size: int = 64 * 2**20
    compression_level: int | None = 3  # zstd level of snapshots; None: uncompressed
    # the embedding space
    dim: int = 768
    metric: Literal["cosine", "ip", "l2"] = "cosine"
    # the index
    enable_hnsw: bool = True  # False: exact search only
    m: int = 16
    ef_construction: int = 200
    ef_search: int = 100
    max_level: int = 15  # highest HNSW level a node may get (0..15)
    # seconds a checkpoint, delete or allocation waits for the index linker at most
    link_timeout: float = 30.0
    link_attempts: int = 5  # failed links in a row after which the linker reports failing
    # allocation
    direct_threshold: int = 2_000  # exact candidates below this many nodes
    similarity_threshold: float = 0.7  # the best candidate at or above it becomes the parent
    neighbors: int = 5  # neighbours listed in an allocation result
    max_text_length: int = 4096
    max_k: int = 1000
    max_batch: int = 1000  # facts in one allocate_many
    partition: int = 0
    # node-record caches in front of the store (records.py)
    enable_caching: bool = True
    eviction_policy: str = "lru-with-frequency"  # or "lru"
    cache_l1_capacity: int = 100_000
    cache_l1_shards: int = 16
    cache_l1_ttl: float | None = 3600.0
    cache_l1_max_memory: int | None = 2**30
    cache_l2_capacity: int = 10_000_000
    cache_l2_shards: int = 16
    cache_l2_ttl: float | None = 6 * 3600.0
    cache_l2_max_memory: int | None = 8 * 2**30
    prefetch_distance: int = 0  # graph neighbours brought into L2 after a store read
    cache_warmup_on_startup: bool = False  # load the most-read nodes at start
    cache_warmup_count: int = 10_000
    # adaptive precision (rules in quantization.py)
    enable_quantization: bool = True  # False: every node full precision, always
    enable_adaptive: bool = True  # False: every node at default_precision
    default_precision: str = "q8"
    importance_threshold: float = 0.8
    precision_bands: tuple[float, float, float] | None = None  # default (t, t/2, t/4)
    precision_levels: dict[str, str] | None = (
        None  # default high/medium/low/very_low -> full/q8/q4/binary
    )
    memory_pressure_threshold: float = 0.85  # share of the budget above which nodes get cheaper
    memory_budget: int | None = None  # bytes; default the cgroup limit, else physical memory

    def __post_init__(self) -> None:
        self.data_directory = Path(self.data_directory)
        if self.backup_directory is not None:
            self.backup_directory = Path(self.backup_directory)
        if self.store_backend not in ("sqlite", "postgresql"):
            raise ValueError(
                f"store_backend must be 'sqlite' or 'postgresql', got {self.store_backend!r}"
            )
        if self.store_backend == "postgresql" and not self.postgres_dsn:
            raise ValueError("store_backend 'postgresql' needs postgres_dsn")
        if self.durability not in ("fsync", "interval"):
            raise ValueError(f"durability must be 'fsync' or 'interval', got {self.durability!r}")
        if self.backup_retention < 0:
            raise ValueError(f"backup_retention must be 0 or more, got {self.backup_retention}")
        if self.write_timeout <= 0:
            raise ValueError(f"write_timeout must be more than 0, got {self.write_timeout}")
        if self.link_timeout <= 0 or self.link_attempts < 1:
            raise ValueError("link_timeout must be more than 0 and link_attempts at least 1")
        if self.follow_interval <= 0 or self.catch_up_timeout <= 0:
            raise ValueError("follow_interval and catch_up_timeout must be more than 0")
        if self.dim < 1:
            raise ValueError(f"dim must be at least 1, got {self.dim}")
        if not -1.0 <= self.similarity_threshold <= 1.0 and self.metric == "cosine":
            raise ValueError("similarity_threshold must be between -1 and 1 for cosine")
        if not 0 < self.memory_pressure_threshold <= 1:
            raise ValueError("memory_pressure_threshold must be in (0, 1]")
        if self.eviction_policy not in CACHE_POLICIES:
            raise ValueError(
                f"eviction_policy must be one of {CACHE_POLICIES}, got {self.eviction_policy!r}"
            )
        if self.prefetch_distance < 0:
            raise ValueError("prefetch_distance must not be negative")
        if self.neighbors < 0 or self.direct_threshold < 0:
            raise ValueError("neighbors and direct_threshold must not be negative")
