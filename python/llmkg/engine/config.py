"""The engine's settings: what an ``AllocationEngine`` is built with.

Defaults: the config schema's (``llmkg/config/schema.py``), which are the production
values; each field below reads its default from the key the server maps onto it
(``llmkg/config/to_engine.py``), so an engine made in Python and the server agree unless
told otherwise. Where an engine embedded in a Python process must differ from the
server, the field says so and ``EMBEDDED_DIFFERENCES`` lists it.

Validation: once, when an ``EngineConfig`` is made (``__post_init__``). Each field is
checked against its type, and the bounded types are the schema's own (``LinksPerNode``,
``Fraction``, ``Precision``...), so a bound is written once for the TOML file and for
Python; then the rules that span fields. A bad value raises ``EngineConfigError``, which
names the field. The layers below (index, caches, precision policy) trust these values.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from llmkg.config.schema import (
    BatchSize,
    CachePolicy,
    CacheShards,
    CompressionLevel,
    Dimension,
    Durability,
    Fraction,
    LinksPerNode,
    MaxLayer,
    Metric,
    Neighbors,
    NonNegative,
    PoolSize,
    Positive,
    Precision,
    PressureThreshold,
    SearchBeam,
    Settings,
    StoreBackend,
    TextLength,
)
from llmkg.engine.quantization import BANDS

# Bounds of the engine's own fields. Seconds are plain numbers here (the config writes
# durations such as "30s"). Bounds are written as the schema writes them (0, not 0.0):
# typing hands out the first of two equal Annotated types, and the configuration
# reference prints the bound of whichever was made first.
Seconds = Annotated[float, msgspec.Meta(ge=0)]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]
Bytes = Annotated[int, msgspec.Meta(ge=1)]

# The production values, read once: every default below comes from here.
_PRODUCTION = Settings()
_storage = _PRODUCTION.storage
_pg = _storage.postgresql
_persistence = _storage.persistence
_scale = _PRODUCTION.scalability
_hnsw, _cache, _quant = _scale.hnsw, _scale.cache, _scale.quantization
_allocation = _PRODUCTION.allocation

# Where the engine made in Python does not take the server's default, and why.
EMBEDDED_DIFFERENCES = {
    # The server's /var/lib/llmkg needs a deployment (a volume, root's permission); a
    # Python process writes beside where it runs, as the server without --config does.
    "data_directory": "./data, not storage.data_directory (/var/lib/llmkg)",
    # Follows data_directory wherever it is put, instead of a second fixed path.
    "backup_directory": "<data_directory>-backups, not storage.backup_directory",
}

# The engine's own limit on a search's k: no config key sets it.
MAX_K = 1000


class EngineConfigError(ValueError):
    """A setting of ``EngineConfig`` that cannot be used; ``field`` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"EngineConfig.{field}: {reason}")
        self.field, self.reason = field, reason


@dataclass
class EngineConfig:
    """The engine's settings. The defaults are the production values of the configuration
    reference, where each field has its TOML key (the server builds its config from
    them), but ``data_directory`` and ``backup_directory``. A config is checked when it
    is made: a bad value raises ``EngineConfigError`` naming the field."""

    # --- storage ([storage], [storage.postgresql], [storage.persistence]) ---
    data_directory: Path = field(default_factory=lambda: Path("data"))  # and snapshots
    store_backend: StoreBackend = _storage.backend  # "postgresql": facts in a shared database
    # whether opening the store may upgrade an older format or schema; False: such a store
    # is refused (StoreOutdatedError) until `llmkg-server migrate` has run
    auto_migrate: bool = _storage.auto_migrate
    # PostgreSQL (store_backend = "postgresql"): a libpq connection string or URI, the
    # size of the connection pool, seconds to connect (and to wait for a pooled
    # connection), seconds a statement may run (0: no limit)
    postgres_dsn: str = field(default=_pg.dsn, repr=False)  # repr: it may hold a password
    postgres_pool_size: PoolSize = _pg.pool_size
    postgres_connect_timeout: PositiveSeconds = float(_pg.connect_timeout)
    postgres_statement_timeout: Seconds = float(_pg.statement_timeout)
    # seconds between polls of a PostgreSQL store for other processes' changes (follow.py)
    follow_interval: PositiveSeconds = float(_pg.follow_interval)
    # seconds a read (or a write, for its own change) waits for this process to apply
    # the store's changes up to the store's last sequence (then NotCaughtUpError: 503)
    catch_up_timeout: PositiveSeconds = float(_pg.catch_up_timeout)
    # while the database cannot be reached, answer reads from what this process has
    # applied (follow.py) instead of failing them
    stale_reads: bool = _pg.stale_reads
    backup_directory: Path | None = None  # None: <data_directory>-backups, beside it
    # backups kept in backup_directory (the newest); 0: all
    backup_retention: NonNegative = _storage.backup_retention
    durability: Durability = _persistence.durability  # "interval": fsync every sync_interval
    sync_interval: Seconds = float(_persistence.sync_interval)
    # seconds a write waits for its commit (StoreTimeoutError)
    write_timeout: PositiveSeconds = float(_persistence.write_timeout)
    # seconds between index snapshots; 0: never by time
    checkpoint_interval: Seconds = float(_persistence.checkpoint_interval)
    # bytes of facts and vectors written since the last snapshot that trigger a new one:
    # it bounds what a restart replays
    max_wal_size: NonNegative = int(_persistence.max_wal_size)
    # zstd level of snapshots; None: uncompressed
    compression_level: CompressionLevel | None = _storage.snapshot_compression_level
    # --- the embedding space and the index ([scalability.hnsw]) ---
    dim: Dimension = _hnsw.dimension
    metric: Metric = _hnsw.metric
    enable_hnsw: bool = _scale.enable_hnsw  # False: exact search only
    m: LinksPerNode = _hnsw.max_connections
    ef_construction: Positive = _hnsw.ef_construction
    ef_search: SearchBeam = _hnsw.ef_search
    max_level: MaxLayer = _hnsw.max_layer  # highest HNSW level a node may get
    # seconds a checkpoint, delete or allocation waits for the index linker at most
    link_timeout: PositiveSeconds = float(_hnsw.link_timeout)
    # failed links in a row after which the linker reports failing
    link_attempts: Positive = _hnsw.link_attempts
    # --- allocation ([allocation]) ---
    direct_threshold: NonNegative = _allocation.direct_threshold  # exact scan below it
    # the best candidate at or above it becomes the parent (-1 to 1 for cosine)
    similarity_threshold: float = _allocation.similarity_threshold
    neighbors: Neighbors = _allocation.neighbors  # neighbours listed in a result
    max_text_length: TextLength = _allocation.max_text_length
    max_k: Positive = MAX_K
    max_batch: BatchSize = _allocation.max_batch  # facts in one allocate_many
    partition: NonNegative = _scale.distribution.partition_id
    # partitions the PostgreSQL database's facts are split into, fixed per database (a
    # store opened with another count is refused): 1, every server a replica of the whole
    # graph, until partitioned serving splits it by scalability.distribution
    partition_count: Positive = 1
    # --- node-record caches in front of the store ([scalability.cache]; records.py) ---
    enable_caching: bool = _scale.enable_caching
    eviction_policy: CachePolicy = _cache.eviction_policy
    cache_l1_capacity: Positive = _cache.l1_size
    cache_l1_shards: CacheShards = _cache.l1_shards
    cache_l1_ttl: PositiveSeconds | None = float(_cache.l1.ttl) or None  # None: no expiry
    cache_l1_max_memory: Bytes | None = int(_cache.l1.max_memory) or None  # None: no bound
    cache_l2_capacity: Positive = _cache.l2_size
    cache_l2_shards: CacheShards = _cache.l2_shards
    cache_l2_ttl: PositiveSeconds | None = float(_cache.l2.ttl) or None
    cache_l2_max_memory: Bytes | None = int(_cache.l2.max_memory) or None
    # graph neighbours brought into L2 after a store read
    prefetch_distance: NonNegative = _cache.prefetch_distance
    cache_warmup_on_startup: bool = _cache.cache_warmup_on_startup  # most-read nodes at start
    cache_warmup_count: NonNegative = _cache.warmup_count
    # --- adaptive precision ([scalability.quantization]; rules in quantization.py) ---
    enable_quantization: bool = _scale.enable_quantization  # False: all full, always
    enable_adaptive: bool = _quant.enable_adaptive  # False: every node at default_precision
    default_precision: Precision = _quant.default_precision
    importance_threshold: Fraction = _quant.importance_threshold
    # three descending edges of the high/medium/low bands; None: (t, t/2, t/4) of
    # importance_threshold t
    precision_bands: tuple[Fraction, Fraction, Fraction] | None = (
        tuple(_quant.precision_bands) if _quant.precision_bands else None  # type: ignore[assignment]
    )
    # the precision of each band: high, medium, low, very_low
    precision_levels: dict[str, Precision] = field(default_factory=_quant.precision_levels.by_band)
    # share of the budget above which nodes get cheaper
    memory_pressure_threshold: PressureThreshold = _quant.memory_pressure_threshold
    # bytes; None: the cgroup limit, else physical memory
    memory_budget: Bytes | None = int(_PRODUCTION.performance.memory.budget) or None

    def __post_init__(self) -> None:
        self.data_directory = Path(self.data_directory)
        if self.backup_directory is not None:
            self.backup_directory = Path(self.backup_directory)
        for name, hint in _checked_types().items():
            setattr(self, name, _checked(name, getattr(self, name), hint))
        # Rules that span fields.
        if self.store_backend == "postgresql" and not self.postgres_dsn:
            raise EngineConfigError("postgres_dsn", "is needed when store_backend = 'postgresql'")
        if self.metric == "cosine" and not -1.0 <= self.similarity_threshold <= 1.0:
            raise EngineConfigError("similarity_threshold", "must be from -1 to 1 for cosine")
        bands = self.precision_bands
        if bands is not None and list(bands) != sorted(bands, reverse=True):
            raise EngineConfigError("precision_bands", f"must be descending, got {bands}")
        if set(self.precision_levels) != set(BANDS):
            raise EngineConfigError(
                "precision_levels",
                f"must give the bands {', '.join(BANDS)}, got {list(self.precision_levels)}",
            )


@functools.cache
def _checked_types() -> dict[str, Any]:
    """Each field's type with its bounds, but the paths (any path is fine)."""
    hints = typing.get_type_hints(EngineConfig, include_extras=True)
    return {
        f.name: hints[f.name]
        for f in dataclasses.fields(EngineConfig)
        if f.name not in ("data_directory", "backup_directory")
    }


def _checked(name: str, value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (a list given for a tuple becomes one), or EngineConfigError."""
    # Any number type (the config's Duration and ByteSize, numpy's) as the plain number
    # msgspec checks.
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
    elif isinstance(value, dict) and typing.get_origin(hint) is dict:
        _, item = typing.get_args(hint)
        return {k: _checked(f"{name}.{k}", v, item) for k, v in value.items()}
    try:
        return msgspec.convert(value, hint)
    except msgspec.ValidationError as e:
        reason = str(e)
        at = reason.rfind(" - at `$")
        if at != -1:  # within a tuple: name the item
            reason, name = reason[:at], name + reason[at + 8 : -1]
        elif names := _names(hint):
            reason = "must be one of " + ", ".join(map(repr, names))
        reason = re.sub(r", got `[^`]*`$", "", reason)  # the value is shown instead
        shown = "" if name == "postgres_dsn" else f", got {value!r}"
        raise EngineConfigError(name, f"{reason}{shown}") from None


def _names(hint: Any) -> tuple[Any, ...]:
    """The values a Literal type (or an optional one) allows; () for other types."""
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    return next((n for arg in typing.get_args(hint) if (n := _names(arg))), ())
