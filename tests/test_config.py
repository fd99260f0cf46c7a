"""The layered config: the repo's files, overlays, environment overrides, units, and errors
that name the key, the value and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmkg.config import ConfigError, Settings, engine_config, load_settings, to_builtins
from llmkg.config.units import format_duration, format_size, parse_duration, parse_size

CONFIG = Path(__file__).resolve().parents[1] / "config"
PRODUCTION = CONFIG / "production.toml"


def test_production_toml_holds_exactly_the_schema_defaults() -> None:
    # The built-in defaults are the production values: the file and the schema agree.
    assert load_settings(PRODUCTION, environ={}) == Settings()


def test_builtin_defaults_are_production_with_tls_auth_distribution_tracing_off() -> None:
    s = load_settings(environ={})
    assert s.server.bind_address == "127.0.0.1"
    assert not s.security.enable_tls and s.security.authentication.type == "none"
    assert not s.scalability.enable_distributed
    assert not s.monitoring.enable_tracing and Settings().monitoring.enable_tracing
    assert s.storage.data_directory == "./data"
    assert s.scalability.hnsw == Settings().scalability.hnsw


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ("staging", {"workers": 4, "l1": 10_000, "hnsw": True, "distributed": False}),
        ("development", {"workers": 8, "l1": 1_000, "hnsw": False, "distributed": False}),
    ],
)
def test_environment_overlays(environment: str, expected: dict) -> None:
    s = load_settings(PRODUCTION, environment, environ={})
    assert s.performance.worker_threads == expected["workers"]
    assert s.scalability.cache.l1_size == expected["l1"]
    assert s.scalability.enable_hnsw == expected["hnsw"]
    assert s.scalability.enable_distributed == expected["distributed"]
    assert s.scalability.cache.l2.shards == 16, "keys the overlay leaves alone stay"


def test_development_overlay_turns_hnsw_cache_quantization_off_in_the_engine() -> None:
    config = engine_config(load_settings(PRODUCTION, "development", environ={}))
    assert not config.enable_hnsw and not config.enable_quantization


def test_engine_config_maps_the_seed_sections() -> None:
    c = engine_config(load_settings(PRODUCTION, environ={"LLMKG_PARTITION_ID": "3"}))
    assert (c.dim, c.m, c.ef_construction, c.ef_search, c.max_level) == (768, 32, 400, 100, 5)
    assert (c.cache_l1_capacity, c.cache_l1_shards, c.cache_l1_ttl) == (100_000, 1, 3600.0)
    assert (c.cache_l2_capacity, c.cache_l2_shards, c.cache_l2_ttl) == (10_000_000, 16, 21600.0)
    assert c.cache_l2_max_memory == 8 * 2**30 and c.eviction_policy == "lru-with-frequency"
    assert (c.importance_threshold, c.memory_pressure_threshold) == (0.7, 0.85)
    assert c.precision_levels == {"high": "full", "medium": "q8", "low": "q4", "very_low": "binary"}
    assert (c.checkpoint_interval, c.max_wal_size, c.compression_level) == (300.0, 2**30, 3)
    assert c.partition == 3 and c.prefetch_distance == 50 and c.cache_warmup_on_startup


def test_environment_variables_override_single_keys(tmp_path: Path) -> None:
    s = load_settings(
        PRODUCTION,
        environ={
            "LLMKG__SERVER__HTTP_PORT": "18080",
            "LLMKG__STORAGE__DATA_DIRECTORY": str(tmp_path),
            "LLMKG__SCALABILITY__CACHE__L1__TTL": "2h",
            "LLMKG__MONITORING__PROMETHEUS__HISTOGRAM_BUCKETS": "[0.5, 1.5]",
            "LLMKG__SECURITY__ENABLE_TLS": "false",
        },
    )
    assert s.server.http_port == 18080 and s.storage.data_directory == str(tmp_path)
    assert s.scalability.cache.l1.ttl == 7200 and not s.security.enable_tls
    assert s.monitoring.prometheus.histogram_buckets == [0.5, 1.5]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("7d", 604800), ("250ms", 0.25), (12, 12)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(parse_duration(text))) == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("64MB", 64 << 20), ("1GB", 1 << 30), ("512KiB", 512 << 10), ("10B", 10), (4096, 4096)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size
    assert parse_size(format_size(parse_size(text))) == size


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        ("[server]\nhttp_port = 'eighty'\n", "server.http_port", "Expected `int`"),
        ("[server]\nhttp_port = 0\n", "server.http_port", ">= 1"),
        ("[server]\nhttp_prot = 8080\n", "server.http_prot", "unknown field"),
        ("[nonsense]\nx = 1\n", "nonsense", "unknown field"),
        ("[storage.persistence]\nsync_interval = '5 parsecs'\n", "sync_interval", "duration"),
        ("[scalability.cache.l2]\nmax_memory = 'lots'\n", "max_memory", "size"),
        ("[logging]\nlevel = 'loud'\n", "logging.level", "Invalid enum value"),
        ("[scalability.quantization]\nimportance_threshold = 2.0\n", "importance", "<= 1.0"),
        ("[scalability.quantization]\ndefault_precision = 'q5'\n", "default_pre", "Invalid enum"),
        ("[scalability.cache]\neviction_policy = 'lfu'\n", "eviction_policy", "Invalid enum"),
        ("[scalability.hnsw]\nmax_connections = 1\n", "max_connections", ">= 2"),
        ("[server]\nmetrics_port = 8080\n", "server.metrics_port", "must differ"),
        ("[storage.persistence]\nwrite_timeout = '0s'\n", "write_timeout", "more than 0"),
        ("[scalability.hnsw]\nlink_timeout = 0\n", "link_timeout", "more than 0"),
        ("[monitoring]\notlp_timeout = 0\n", "monitoring.otlp_timeout", "more than 0"),
        ("[monitoring]\notlp_endpoint = 'collector:4318'\n", "otlp_endpoint", "matching regex"),
        ("[server\n", "", "not valid TOML"),
    ],
)
def test_bad_files_name_key_value_and_file(tmp_path: Path, body: str, key: str, words: str) -> None:
    path = write(tmp_path / "llmkg.toml", body)
    with pytest.raises(ConfigError) as err:
        load_settings(path, environ={})
    message = str(err.value)
    assert str(path) in message and key in message and words in message, message


def test_errors_blame_the_overlay_or_variable_that_set_the_key(tmp_path: Path) -> None:
    base = write(tmp_path / "base.toml", "[server]\nhttp_port = 8080\n")
    overlay = write(tmp_path / "environments" / "qa.toml", "[server]\nhttp_port = -1\n")
    with pytest.raises(ConfigError, match=str(overlay)):
        load_settings(base, "qa", environ={})
    with pytest.raises(ConfigError, match="LLMKG__SERVER__MAX_CONNECTIONS"):
        load_settings(base, environ={"LLMKG__SERVER__MAX_CONNECTIONS": "many"})
    with pytest.raises(ConfigError, match="no overlay"):
        load_settings(base, "missing", environ={})
    with pytest.raises(ConfigError, match="partition_count"):
        load_settings(base, environ={"LLMKG_PARTITION_ID": "8"})


def test_effective_config_prints_units_as_written() -> None:
    data = to_builtins(load_settings(PRODUCTION, environ={}))
    assert data["storage"]["persistence"]["checkpoint_interval"] == "5m"
    assert data["scalability"]["cache"]["l2"]["max_memory"] == "8GB"
    assert data["server"]["max_body_size"] == "4MB"


def test_env_text_that_looks_like_a_number_is_kept_for_a_string_key() -> None:
    # "1.3" reads as a TOML float; min_tls_version is a string key, so the text is used.
    env = {"LLMKG__SECURITY__MIN_TLS_VERSION": "1.3", "LLMKG__SECURITY__ENABLE_TLS": "true"}
    settings = load_settings(CONFIG / "production.toml", environ=env)
    assert settings.security.min_tls_version == "1.3"
    audience = {"LLMKG__SECURITY__AUTHENTICATION__AUDIENCE": "12345"}
    assert load_settings(environ=audience).security.authentication.audience == "12345"
    with pytest.raises(ConfigError, match="MIN_TLS_VERSION"):
        load_settings(environ={"LLMKG__SECURITY__MIN_TLS_VERSION": "1.1"})
