"""Loading the config: the base file (or the built-in defaults), the environment's overlay
beside it, then single keys from environment variables; validated as a whole, with errors
that name the key, the value and where it came from."""

from __future__ import annotations

import os
import re
import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from llmkg.config.schema import Settings
from llmkg.config.units import decode_hook, encode_hook
from llmkg.topology.server import LayoutError
from llmkg.topology.server import check as check_distribution
from llmkg.validation import error_location

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BUILTIN = "built-in defaults"
ENV_PREFIX = "LLMKG__"
ENV_LAYER = "environment variables"
# Variables that set one key each, under names of their own: what a deployment sets per
# pod (Kubernetes: the pod-index label, a zone-pinned StatefulSet's zone).
ENV_SHORTCUTS = {
    "LLMKG_PARTITION_ID": "scalability.distribution.partition_id",
    "LLMKG_POD_INDEX": "scalability.distribution.pod_index",
    "LLMKG_ZONE": "scalability.distribution.zone",
}

# The production values with TLS, authentication, distribution and tracing off (no
# collector to send spans to), on loopback, with data under ./data: what `make run` serves.
BUILTIN_OVERRIDES: dict[str, Any] = {
    "server": {"bind_address": "127.0.0.1"},
    "scalability": {"enable_distributed": False},
    "monitoring": {"enable_tracing": False},
    "storage": {"data_directory": "./data", "backup_directory": "./data/backup"},
    "security": {"enable_tls": False, "authentication": {"type": "none"}},
}


class ConfigError(ValueError):
    """A config that cannot be used; names the key, the value and its source."""

    def __init__(self, source: str, key: str, message: str, value: Any = None) -> None:
        shown = f" = {value!r}" if value is not None else ""
        super().__init__(f"{source}: {key or '(file)'}{shown}: {message}")
        self.source, self.key, self.value, self.reason = source, key, value, message


Layer = tuple[str, dict[str, Any]]


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            table: dict[str, Any] = tomllib.load(f)
            return table
    except OSError as e:
        raise ConfigError(str(path), "", f"cannot read the file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), "", f"not valid TOML: {e}") from None


def _env_path(name: str) -> list[str]:
    """``LLMKG__SERVER__HTTP_PORT`` -> ``["server", "http_port"]``."""
    return [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]


def _env_key(name: str) -> list[str] | None:
    """The key path a variable sets, or None for a variable that is not llmkg's."""
    if name.startswith(ENV_PREFIX):
        return _env_path(name)
    if name in ENV_SHORTCUTS:
        return ENV_SHORTCUTS[name].split(".")
    return None


def _env_items(environ: Mapping[str, str]) -> list[tuple[str, list[str], str]]:
    """(variable, key path, raw text) of llmkg's variables, in the order they apply: a
    ``LLMKG__`` variable wins over a shortcut that sets the same key."""
    items = [(name, _env_key(name), raw) for name, raw in environ.items()]
    found = [(name, path, raw) for name, path, raw in items if path is not None]
    return sorted(found, key=lambda item: (item[0].startswith(ENV_PREFIX), item[0]))


def env_layer(environ: Mapping[str, str]) -> Layer | None:
    """``LLMKG__SECTION__KEY=value`` (any depth) and the ``ENV_SHORTCUTS``. A value is read
    as TOML when it parses as one (numbers, booleans, lists, quoted strings), else as text."""
    values: dict[str, Any] = {}
    for name, path, raw in _env_items(environ):
        if not all(path):
            raise ConfigError("environment", name, "empty key segment", raw)
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = values
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError("environment", name, "conflicts with another variable", raw)
        node[path[-1]] = value
    return (ENV_LAYER, values) if values else None


def env_texts(environ: Mapping[str, str]) -> dict[str, str]:
    """The raw text of each of llmkg's variables by dotted key (the one that applies)."""
    return {".".join(path): raw for _, path, raw in _env_items(environ)}


def env_names(environ: Mapping[str, str]) -> dict[str, str]:
    """The variable that sets each dotted key (the one that applies)."""
    return {".".join(path): name for name, path, _ in _env_items(environ)}


class _Merged:
    """The layers merged key by key (later ones win), remembering which layer set what."""

    def __init__(self, layers: list[Layer], env_names: Mapping[str, str] | None = None) -> None:
        self.tree: dict[str, Any] = {}
        self.sources: dict[str, str] = {}
        self.env_names = dict(env_names or {})
        for source, values in layers:
            self._merge(self.tree, values, source, "")

    def _merge(self, into: dict[str, Any], layer: Mapping[str, Any], source: str, at: str) -> None:
        for key, value in layer.items():
            dotted = f"{at}{key}"
            if isinstance(value, dict):
                if not isinstance(into.get(key), dict):
                    into[key] = {}
                    self.sources[dotted] = source
                self._merge(into[key], value, source, dotted + ".")
            else:
                into[key] = value
                self.sources[dotted] = source

    def set(self, key: str, value: Any) -> None:
        *parents, last = key.split(".")
        node = self.tree
        for part in parents:
            node = node[part]
        node[last] = value

    def error(self, key: str, message: str) -> ConfigError:
        """An error about ``key``, blaming the layer that set it (or its nearest table)."""
        parts = key.split(".")
        source, set_at = BUILTIN, key
        for end in range(len(parts), 0, -1):
            if found := self.sources.get(".".join(parts[:end])):
                source, set_at = found, ".".join(parts[:end])
                break
        if source == ENV_LAYER:
            name = self.env_names.get(set_at)
            if name is None:
                name = ENV_PREFIX + "__".join(p.upper() for p in set_at.split("."))
            source = f"environment variable {name}"
        node: Any = self.tree
        for part in parts:
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                node = node.get(part) if isinstance(node, Mapping) else None
        return ConfigError(source, key, message, node)


def resolve(
    layers: list[Layer],
    env_texts: Mapping[str, str] | None = None,
    env_names: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers and validate the result as a whole. ``env_texts``: the raw text of
    each environment variable by dotted key, used as is where a string is expected and the
    text read as TOML gave another type (``...__MIN_TLS_VERSION=1.3`` means "1.3");
    ``env_names``: the variable that set each key, named in errors."""
    merged = _Merged(layers, env_names)
    texts = dict(env_texts or {})
    while True:
        try:
            settings = msgspec.convert(merged.tree, Settings, dec_hook=decode_hook)
            break
        except msgspec.ValidationError as e:
            field, reason = error_location(e)
            key = re.sub(r"\[(\d+)\]", r".\1", field)
            text = texts.pop(key, None)
            if text is None or not reason.startswith("Expected `str"):
                raise merged.error(key, reason) from None
            merged.set(key, text)
    _check(settings, merged)
    return settings


def _check(settings: Settings, merged: _Merged) -> None:
    """Rules that span keys."""
    s = settings.server
    if s.metrics_port == s.http_port and settings.monitoring.enable_metrics:
        raise merged.error("server.metrics_port", "must differ from server.http_port")
    try:
        check_distribution(settings.scalability.distribution)
    except LayoutError as e:
        raise merged.error(e.key, e.reason) from None
    bands = settings.scalability.quantization.precision_bands
    if bands and (len(bands) != 3 or bands != sorted(bands, reverse=True)):
        raise merged.error(
            "scalability.quantization.precision_bands", "must be three descending values"
        )
    # Deadlines that 0 would turn into "fail every call at once".
    if settings.storage.persistence.write_timeout <= 0:
        raise merged.error("storage.persistence.write_timeout", "must be more than 0")
    if settings.scalability.hnsw.link_timeout <= 0:
        raise merged.error("scalability.hnsw.link_timeout", "must be more than 0")
    storage = settings.storage
    pg = storage.postgresql
    # Blamed on keys other than dsn: an error shows the value of the key it names.
    if storage.backend == "postgresql" and not (pg.dsn or pg.dsn_file):
        raise merged.error("storage.backend", "needs storage.postgresql.dsn or dsn_file")
    if pg.dsn and pg.dsn_file:
        raise merged.error("storage.postgresql.dsn_file", "give dsn or dsn_file, not both")
    if pg.connect_timeout <= 0:
        raise merged.error("storage.postgresql.connect_timeout", "must be more than 0s")
    for key in ("follow_interval", "catch_up_timeout"):
        if getattr(pg, key) <= 0:
            raise merged.error(f"storage.postgresql.{key}", "must be more than 0s")
    if settings.monitoring.otlp_timeout <= 0:
        raise merged.error("monitoring.otlp_timeout", "must be more than 0s")
    buckets = settings.monitoring.prometheus.histogram_buckets
    if buckets != sorted(set(buckets)):
        raise merged.error("monitoring.prometheus.histogram_buckets", "must be strictly increasing")
    try:
        # OpenSSL ignores the names it does not know: only a string that selects nothing
        # fails here, and it would otherwise fail later, as every handshake.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(settings.security.tls_ciphers)
    except ssl.SSLError:
        raise merged.error(
            "security.tls_ciphers", "selects no cipher suite this OpenSSL knows"
        ) from None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environment: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The effective config: ``path`` (else the built-in defaults), then
    ``environments/<environment>.toml`` beside it, then the environment variables."""
    environ = os.environ if environ is None else environ
    layers: list[Layer] = []
    if path is None:
        layers.append((BUILTIN, BUILTIN_OVERRIDES))
        base_dir = None
    else:
        base = Path(path)
        layers.append((str(base), read_toml(base)))
        base_dir = base.parent
    if environment:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", environment) or environment.startswith("."):
            raise ConfigError("--environment", "environment", "not a valid name", environment)
        if base_dir is None:
            raise ConfigError(
                "--environment", "environment", "needs a base file (--config)", environment
            )
        overlay = base_dir / "environments" / f"{environment}.toml"
        if not overlay.is_file():
            raise ConfigError(str(overlay), "", f"no overlay for environment {environment!r}")
        layers.append((str(overlay), read_toml(overlay)))
    env = env_layer(environ)
    if env:
        layers.append(env)
    return resolve(layers, env_texts(environ), env_names(environ))


def to_builtins(settings: Settings) -> dict[str, Any]:
    """The settings as plain data, durations and sizes written as the config writes them."""
    out: dict[str, Any] = msgspec.to_builtins(settings, enc_hook=encode_hook)
    return out


SECRET_WORDS = ("secret", "password", "token")
MASK = "********"
# The password of a PostgreSQL connection string: in a URI's user info or query, or a
# ``password=`` keyword (its value bare or in single quotes, with backslash escapes).
# To the last "@": over-masking a query that holds one beats showing a password with a "/".
_URI_USERINFO = re.compile(r"^(postgres(?:ql)?://[^:@/?#]*):.*@", re.IGNORECASE | re.DOTALL)
_URI_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """A PostgreSQL connection string (keywords or URI) with its password hidden."""
    if re.match(r"postgres(?:ql)?://", dsn, re.IGNORECASE):
        return _URI_PASSWORD.sub(rf"\1{MASK}", _URI_USERINFO.sub(rf"\1:{MASK}@", dsn))
    return _KEYWORD_PASSWORD.sub(rf"\1{MASK}", dsn)


def masked(data: Any, key: str = "") -> Any:
    """``data`` with the values of secret-looking keys hidden (paths to secret files and
    token lifetimes are not secrets), and the passwords of connection strings."""
    if isinstance(data, dict):
        return {k: masked(v, k) for k, v in data.items()}
    if key == "dsn" and isinstance(data, str):
        return mask_dsn(data)
    lowered = key.lower()
    hidden = any(w in lowered for w in SECRET_WORDS) and not lowered.endswith(("_file", "expiry"))
    return MASK if hidden and data else data
