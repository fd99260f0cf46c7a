"""The server's config (``Settings``) turned into the engine's settings (``EngineConfig``,
defined in ``llmkg/engine/config.py``): the one place that says which key sets which
field. ``EngineConfig()``'s own defaults are read from the same schema, so
``engine_config(Settings())`` differs from ``EngineConfig()`` only where the embedded
engine must (``EMBEDDED_DIFFERENCES``); a test holds the two to that."""

from __future__ import annotations

from pathlib import Path

from llmkg.config.loader import ConfigError
from llmkg.config.schema import PostgresqlSettings, Settings
from llmkg.engine.config import EngineConfig


def postgres_dsn(pg: PostgresqlSettings) -> str:
    """The DSN, from ``dsn_file`` when set (a mounted Secret; read at each start)."""
    if not pg.dsn_file:
        return pg.dsn
    try:
        dsn = Path(pg.dsn_file).read_text().strip()
    except OSError as e:
        raise ConfigError(
            "storage.postgresql", "dsn_file", f"cannot read it ({e.strerror})", pg.dsn_file
        ) from None
    if not dsn:
        raise ConfigError("storage.postgresql", "dsn_file", "the file is empty", pg.dsn_file)
    return dsn


def engine_config(settings: Settings) -> EngineConfig:
    scale, storage = settings.scalability, settings.storage
    hnsw, cache, quant = scale.hnsw, scale.cache, scale.quantization
    persistence, allocation = storage.persistence, settings.allocation
    return EngineConfig(
        data_directory=Path(storage.data_directory),
        store_backend=storage.backend,
        auto_migrate=storage.auto_migrate,
        postgres_dsn=postgres_dsn(storage.postgresql) if storage.backend == "postgresql" else "",
        postgres_pool_size=storage.postgresql.pool_size,
        postgres_connect_timeout=storage.postgresql.connect_timeout,
        postgres_statement_timeout=storage.postgresql.statement_timeout,
        follow_interval=storage.postgresql.follow_interval,
        catch_up_timeout=storage.postgresql.catch_up_timeout,
        stale_reads=storage.postgresql.stale_reads,
        backup_directory=Path(storage.backup_directory),
        backup_retention=storage.backup_retention,
        durability=persistence.durability,
        sync_interval=persistence.sync_interval,
        write_timeout=persistence.write_timeout,
        checkpoint_interval=persistence.checkpoint_interval,
        max_wal_size=persistence.max_wal_size,
        compression_level=storage.snapshot_compression_level,
        dim=hnsw.dimension,
        metric=hnsw.metric,
        enable_hnsw=scale.enable_hnsw,
        m=hnsw.max_connections,
        ef_construction=hnsw.ef_construction,
        ef_search=hnsw.ef_search,
        max_level=hnsw.max_layer,
        link_timeout=hnsw.link_timeout,
        link_attempts=hnsw.link_attempts,
        direct_threshold=allocation.direct_threshold,
        similarity_threshold=allocation.similarity_threshold,
        neighbors=allocation.neighbors,
        max_text_length=allocation.max_text_length,
        max_batch=allocation.max_batch,
        partition=scale.distribution.partition_id,
        # One partition until the partition layer routes between them.
        partition_count=1,
        enable_caching=scale.enable_caching,
        eviction_policy=cache.eviction_policy,
        cache_l1_capacity=cache.l1_size,
        cache_l1_shards=cache.l1_shards,
        cache_l1_ttl=cache.l1.ttl or None,
        cache_l1_max_memory=cache.l1.max_memory or None,
        cache_l2_capacity=cache.l2_size,
        cache_l2_shards=cache.l2_shards,
        cache_l2_ttl=cache.l2.ttl or None,
        cache_l2_max_memory=cache.l2.max_memory or None,
        prefetch_distance=cache.prefetch_distance,
        cache_warmup_on_startup=cache.cache_warmup_on_startup,
        cache_warmup_count=cache.warmup_count,
        enable_quantization=scale.enable_quantization,
        enable_adaptive=quant.enable_adaptive,
        default_precision=quant.default_precision,
        importance_threshold=quant.importance_threshold,
        # Three values (the schema's rules checked that); EngineConfig wants a tuple.
        precision_bands=tuple(quant.precision_bands) if quant.precision_bands else None,  # type: ignore[arg-type]
        precision_levels=quant.precision_levels.by_band(),
        memory_pressure_threshold=quant.memory_pressure_threshold,
        memory_budget=settings.performance.memory.budget or None,
    )
