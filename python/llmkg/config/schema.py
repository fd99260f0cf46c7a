"""Every key of the config, its type and its default: the seed's production values.

The sections mirror ``config/production.toml``. Keys marked ``# llmkg`` are llmkg's
additions to the seed's keys. Keys of parts that do not exist yet (distribution between
partitions, tracing, the memory arenas of a native runtime) are validated here and listed
as not yet active in ``INACTIVE`` and the README.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from llmkg.config.units import ByteSize, Duration, parse_size

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
Precision = Literal["full", "q8", "q4", "binary"]


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class ServerSettings(Section):
    bind_address: str = "0.0.0.0"
    http_port: Port = 8080
    grpc_port: Port = 8081  # reserved for the partition layer (not yet active)
    metrics_port: Port = 9090
    max_connections: Positive = 10_000
    connection_timeout: Duration = Duration(30)  # idle keep-alive connections are closed
    request_timeout: Duration = Duration(60)  # a request running longer answers 504
    max_body_size: ByteSize = parse_size("4MB")  # llmkg: larger bodies answer 413
    shutdown_timeout: Duration = Duration(30)  # llmkg: bound on draining at SIGTERM
    # llmkg: at SIGTERM, not ready for this long before the listeners close
    drain_delay: Duration = Duration(5)


class LoggingSettings(Section):
    level: Literal["trace", "debug", "info", "warning", "error", "critical"] = "info"
    format: Literal["json", "text"] = "json"
    output: Literal["stdout", "stderr"] = "stdout"
    structured: bool = True  # JSON lines carry request id, route, status... beside the message
    access_log: bool = True  # llmkg: one line per request


class HnswSettings(Section):
    dimension: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 768
    max_connections: Annotated[int, msgspec.Meta(ge=2, le=256)] = 32  # M: links per node
    ef_construction: Positive = 400
    ef_search: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    max_layer: Annotated[int, msgspec.Meta(ge=0, le=15)] = 5
    metric: Literal["cosine", "ip", "l2"] = "cosine"  # llmkg
    # llmkg: longest wait of a checkpoint, delete or allocation for the index linker
    link_timeout: Duration = Duration(30)
    link_attempts: Positive = 5  # llmkg: failed links in a row that make readiness false


class CacheL1Settings(Section):
    type: Literal["lru", "concurrent-lru"] = "lru"
    ttl: Duration = Duration(3600)
    max_memory: ByteSize = parse_size("1GB")


class CacheL2Settings(Section):
    type: Literal["lru", "concurrent-lru"] = "concurrent-lru"
    ttl: Duration = Duration(6 * 3600)
    max_memory: ByteSize = parse_size("8GB")
    shards: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16


class CacheSettings(Section):
    l1_size: Positive = 100_000
    l2_size: Positive = 10_000_000
    prefetch_distance: NonNegative = 50
    cache_warmup_on_startup: bool = True
    eviction_policy: Literal["lru", "lru-with-frequency"] = "lru-with-frequency"
    warmup_count: NonNegative = 10_000  # llmkg: most-read nodes loaded at start
    l1: CacheL1Settings = msgspec.field(default_factory=CacheL1Settings)
    l2: CacheL2Settings = msgspec.field(default_factory=CacheL2Settings)


class DiscoverySettings(Section):
    type: Literal["kubernetes", "static"] = "kubernetes"
    namespace: str = "llmkg-production"
    service_name: str = "llmkg-scalable-allocation-service"
    port: Port = 8081


class DistributionSettings(Section):
    partition_count: Positive = 8
    # llmkg: this process's partition, also set by LLMKG_PARTITION_ID
    partition_id: NonNegative = 0
    communication_timeout: Duration = Duration(5)
    max_retries: NonNegative = 3
    retry_backoff: Literal["exponential", "linear", "constant"] = "exponential"
    circuit_breaker_threshold: Positive = 50
    circuit_breaker_timeout: Duration = Duration(30)
    discovery: DiscoverySettings = msgspec.field(default_factory=DiscoverySettings)


class PrecisionLevels(Section):
    high_importance: Precision = "full"
    medium_importance: Precision = "q8"
    low_importance: Precision = "q4"
    very_low_importance: Precision = "binary"


class QuantizationSettings(Section):
    enable_adaptive: bool = True
    default_precision: Precision = "q8"  # every node's precision when enable_adaptive = false
    importance_threshold: Fraction = 0.7
    memory_pressure_threshold: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.85
    # llmkg: the three descending importance edges of the high/medium/low bands; empty:
    # derived from importance_threshold t as [t, t/2, t/4]
    precision_bands: list[Fraction] = msgspec.field(default_factory=list)
    precision_levels: PrecisionLevels = msgspec.field(default_factory=PrecisionLevels)


class ScalabilitySettings(Section):
    enable_hnsw: bool = True
    enable_caching: bool = True
    enable_distributed: bool = True
    enable_quantization: bool = True
    hnsw: HnswSettings = msgspec.field(default_factory=HnswSettings)
    cache: CacheSettings = msgspec.field(default_factory=CacheSettings)
    distribution: DistributionSettings = msgspec.field(default_factory=DistributionSettings)
    quantization: QuantizationSettings = msgspec.field(default_factory=QuantizationSettings)


class PrometheusSettings(Section):
    endpoint: Annotated[str, msgspec.Meta(pattern="^/")] = "/metrics"
    enable_histogram: bool = True
    histogram_buckets: Annotated[list[float], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0]
    )


class JaegerSettings(Section):
    agent_endpoint: str = "jaeger-agent:6831"
    service_name: str = "llmkg-scalable-allocation"
    tags: dict[str, str] = msgspec.field(
        default_factory=lambda: {"version": "v2a.1.0", "environment": "production"}
    )


class MonitoringSettings(Section):
    enable_metrics: bool = True
    enable_tracing: bool = True
    enable_profiling: bool = False
    sample_rate: Fraction = 0.1
    prometheus: PrometheusSettings = msgspec.field(default_factory=PrometheusSettings)
    jaeger: JaegerSettings = msgspec.field(default_factory=JaegerSettings)


class PersistenceSettings(Section):
    sync_interval: Duration = Duration(30)  # the loss window of durability = "interval"
    checkpoint_interval: Duration = Duration(300)
    max_wal_size: ByteSize = parse_size("1GB")
    enable_compression: bool = True
    # llmkg: "fsync": a 200 means on disk; "interval": fsync every sync_interval
    durability: Literal["fsync", "interval"] = "fsync"
    # llmkg: longest wait of a write for its commit (then 503); more than 0
    write_timeout: Duration = Duration(30)


class PostgresqlSettings(Section):
    """llmkg: the whole section; used when storage.backend = "postgresql"."""

    # A libpq connection string ("host=db dbname=llmkg user=llmkg password=...") or URI
    # ("postgresql://llmkg:...@db/llmkg"); masked in --check-config and never logged
    dsn: str = ""
    # a file holding the DSN (a mounted Kubernetes Secret), read at start; instead of dsn
    dsn_file: str = ""
    pool_size: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 10
    connect_timeout: Duration = Duration(5)  # also the wait for a free pooled connection
    statement_timeout: Duration = Duration(30)  # 0: no limit
    # how often a server polls the database for the changes of the other servers (and at
    # once when one of its own writes commits); more than 0
    follow_interval: Duration = Duration(0.05)
    # how long a search or get waits for this server to apply the changes the database
    # had when it arrived (read-your-writes across servers); past it 503 not_caught_up
    catch_up_timeout: Duration = Duration(5)


class StorageSettings(Section):
    type: Literal["persistent"] = "persistent"
    # llmkg: where the facts are: "sqlite" (a file in data_directory) or "postgresql" (a
    # database several processes share; data_directory keeps the index snapshots)
    backend: Literal["sqlite", "postgresql"] = "sqlite"
    data_directory: Annotated[str, msgspec.Meta(min_length=1)] = "/var/lib/llmkg"
    backup_directory: Annotated[str, msgspec.Meta(min_length=1)] = "/var/lib/llmkg/backup"
    # llmkg: how many backups `backup` keeps in backup_directory (the newest); 0 keeps all
    backup_retention: Annotated[int, msgspec.Meta(ge=0)] = 7
    compression: Literal["zstd", "none"] = "zstd"
    compression_level: Annotated[int, msgspec.Meta(ge=1, le=22)] = 3
    persistence: PersistenceSettings = msgspec.field(default_factory=PersistenceSettings)
    postgresql: PostgresqlSettings = msgspec.field(default_factory=PostgresqlSettings)  # llmkg


class MemorySettings(Section):
    arena_size: ByteSize = parse_size("64MB")
    large_allocation_threshold: ByteSize = parse_size("1MB")
    memory_pool_sizes: list[Positive] = msgspec.field(default_factory=lambda: [64, 1024, 65536])
    # llmkg: the memory budget of adaptive precision; 0: the cgroup limit, else physical memory
    budget: ByteSize = ByteSize(0)


class PerformanceSettings(Section):
    worker_threads: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    io_threads: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 4
    max_blocking_threads: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 16
    stack_size: ByteSize = parse_size("2MB")
    memory: MemorySettings = msgspec.field(default_factory=MemorySettings)


class AuthenticationSettings(Section):
    type: Literal["jwt", "none"] = "jwt"
    secret_key_file: str = "/etc/secrets/jwt-secret"
    token_expiry: Duration = Duration(24 * 3600)
    refresh_token_expiry: Duration = Duration(7 * 86400)
    algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"  # llmkg
    audience: str = ""  # llmkg: checked when set
    issuer: str = ""  # llmkg: checked when set
    # llmkg: per client address, failed authentications (401s) allowed a minute: past
    # them the address gets 429 on guarded routes and refresh until it slows down; 0: off
    auth_failures_per_minute: NonNegative = 60
    refresh_per_minute: NonNegative = 60  # llmkg: refreshes per client address; 0: off
    # llmkg: token ids (jti) refused with 401, one a line, "#" comments; re-read when it
    # changes; "": none
    revoked_tokens_file: str = ""


class RateLimitSettings(Section):
    enabled: bool = True
    requests_per_second: Annotated[float, msgspec.Meta(gt=0)] = 1000.0
    burst: Positive = 2000


class SecuritySettings(Section):
    enable_tls: bool = True
    cert_file: str = "/etc/certs/tls.crt"
    key_file: str = "/etc/certs/tls.key"
    ca_file: str = "/etc/certs/ca.crt"
    min_tls_version: Literal["1.2", "1.3"] = "1.2"
    # llmkg: the TLS 1.2 cipher suites (OpenSSL syntax): Mozilla's "intermediate" profile,
    # ECDHE with AES-GCM or ChaCha20-Poly1305, no CBC. TLS 1.3's suites are all AEAD.
    tls_ciphers: Annotated[str, msgspec.Meta(min_length=1)] = (
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
    )
    require_client_cert: bool = False  # llmkg: verify client certificates against ca_file
    authentication: AuthenticationSettings = msgspec.field(default_factory=AuthenticationSettings)
    rate_limit: RateLimitSettings = msgspec.field(default_factory=RateLimitSettings)  # llmkg


class HealthDependencies(Section):
    check_hnsw_index: bool = True
    check_cache_connectivity: bool = True
    check_partition_health: bool = True
    check_memory_usage: bool = True


class HealthSettings(Section):
    startup_probe_delay: Duration = Duration(10)
    liveness_probe_interval: Duration = Duration(30)
    readiness_probe_interval: Duration = Duration(5)
    health_check_timeout: Duration = Duration(5)
    dependencies: HealthDependencies = msgspec.field(default_factory=HealthDependencies)


class AllocationSettings(Section):
    """llmkg: the whole section."""

    direct_threshold: NonNegative = 2_000
    similarity_threshold: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)] = 0.7
    neighbors: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 5
    max_text_length: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 4096
    max_batch: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


class Settings(Section):
    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
    scalability: ScalabilitySettings = msgspec.field(default_factory=ScalabilitySettings)
    monitoring: MonitoringSettings = msgspec.field(default_factory=MonitoringSettings)
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    performance: PerformanceSettings = msgspec.field(default_factory=PerformanceSettings)
    security: SecuritySettings = msgspec.field(default_factory=SecuritySettings)
    health_checks: HealthSettings = msgspec.field(default_factory=HealthSettings)
    allocation: AllocationSettings = msgspec.field(default_factory=AllocationSettings)


# Validated, not yet acted on: the parts they configure do not exist yet (README lists them).
INACTIVE = (
    "server.grpc_port",
    "scalability.distribution",
    "monitoring.enable_tracing",
    "monitoring.enable_profiling",
    "monitoring.sample_rate",
    "monitoring.jaeger",
    "performance.io_threads",
    "performance.memory.arena_size",
    "performance.memory.large_allocation_threshold",
    "performance.memory.memory_pool_sizes",
)
