"""Logging as ``[logging]`` asks: JSON lines (timestamp, level, logger, message, request id
and the fields a record carries) or plain text, to stdout or stderr."""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import msgspec

from llmkg._core import reset_log_levels
from llmkg.config.schema import LoggingSettings

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Fields a log call may pass with ``extra=`` that the JSON line carries.
FIELDS = ("method", "path", "route", "status", "duration_ms", "client", "subject", "event")
LEVELS = {"trace": logging.DEBUG, "warn": logging.WARNING, "off": logging.CRITICAL + 10}


def level_of(name: str) -> int | None:
    """The number of a level name (also env_logger's trace, warn and off), else None."""
    name = name.strip().lower()
    number = LEVELS.get(name, logging.getLevelName(name.upper()))
    return number if isinstance(number, int) else None


class JsonFormatter(logging.Formatter):
    def __init__(self, structured: bool) -> None:
        super().__init__()
        self.structured = structured

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid is not None:
            line["request_id"] = rid
        if self.structured:
            for name in FIELDS:
                value = record.__dict__.get(name)
                if value is not None:
                    line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line).decode()


CORE_LOGGER = "llmkg_core"  # the Rust core's records arrive under this name (pyo3-log)


def apply_rust_log(spec: str) -> None:
    """``RUST_LOG`` (``info,llmkg=debug``, env_logger's syntax) sets the levels of the Rust
    core's loggers. A directive whose target is a prefix of the core's crate name (as
    ``llmkg`` is, for env_logger too) sets the whole core; a longer one (``llmkg_core::hnsw``)
    sets that module."""
    core = logging.getLogger(CORE_LOGGER)
    for directive in filter(None, (d.strip() for d in spec.split(","))):
        target, _, level = directive.rpartition("=")
        number = level_of(level)
        if number is None:
            continue  # not a level env_logger knows either: ignored, as it would be
        if CORE_LOGGER.startswith(target):  # also a bare level (no target)
            core.setLevel(number)
        elif target.startswith(CORE_LOGGER):
            logging.getLogger(target.replace("::", ".")).setLevel(number)
    reset_log_levels()


def setup_logging(settings: LoggingSettings, rust_log: str | None = None) -> None:
    stream = sys.stdout if settings.output == "stdout" else sys.stderr
    handler = logging.StreamHandler(stream)
    if settings.format == "json":
        handler.setFormatter(JsonFormatter(settings.structured))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level_of(settings.level) or logging.INFO)
    # uvicorn's own loggers go through ours; its access log is replaced by llmkg.access.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    apply_rust_log(rust_log or "")
