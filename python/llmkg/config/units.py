"""Durations and sizes as the config writes them: ``"30s"``, ``"5m"``, ``"1h"``, ``"7d"``,
``"250ms"``; ``"64MB"``, ``"1GB"``, ``"512KiB"``. A bare number is seconds or bytes.

Sizes are binary: ``KB`` = ``KiB`` = 1024 bytes, ``MB`` = 1024², ``GB`` = 1024³, ``TB`` = 1024⁴
(what ``max_memory = "8GB"`` of a cache means)."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_BYTES = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class Duration(float):
    """Seconds."""


class ByteSize(int):
    """Bytes."""


def parse_duration(value: object) -> Duration:
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30s', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    else:
        raise ValueError(f"expected a duration such as '30s', '5m', '1h' or '7d', got {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {value!r}")
    return Duration(seconds)


def parse_size(value: object) -> ByteSize:
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '64MB', got {value!r}")
    if isinstance(value, int):
        size = float(value)
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        unit = (match.group(2) or "").upper()
        size = float(match.group(1)) * _BYTES[unit[:1] if unit != "B" else "B"]
    else:
        raise ValueError(f"expected a size such as '64MB' or '1GB', got {value!r}")
    if size < 0:
        raise ValueError(f"a size must not be negative, got {value!r}")
    return ByteSize(int(size))


def decode_hook(kind: type, value: object) -> object:
    """msgspec's hook for the two custom types of the schema."""
    if kind is Duration:
        return parse_duration(value)
    if kind is ByteSize:
        return parse_size(value)
    raise NotImplementedError(kind)


def format_duration(seconds: float) -> str:
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _SECONDS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{round(seconds * 1000, 3):g}ms"


def format_size(size: int) -> str:
    for unit in ("TB", "GB", "MB", "KB"):
        count, rest = divmod(size, _BYTES[unit[0]])
        if count and not rest:
            return f"{count}{unit}"
    return f"{size}B"


def encode_hook(value: object) -> object:
    """msgspec's hook to print the custom types as the config writes them."""
    if isinstance(value, Duration):
        return format_duration(value)
    if isinstance(value, ByteSize):
        return format_size(value)
    raise NotImplementedError(type(value))
