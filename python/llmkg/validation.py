"""Where a msgspec validation error points, as a dotted field name (``fact.confidence``)."""

from __future__ import annotations

import re

import msgspec

_AT = re.compile(r"^(?P<reason>.*) - at `\$(?P<path>[^`]*)`$")
_NAMED = re.compile(r"(?:unknown|missing required) field `(?P<name>[^`]+)`")


def error_location(error: msgspec.ValidationError) -> tuple[str, str]:
    """``(dotted field, reason)``: ``$.facts[2].subject`` becomes ``facts[2].subject``; an
    unknown or missing field is named itself, not the object that holds it."""
    text = str(error)
    match = _AT.match(text)
    reason, path = (match["reason"], match["path"]) if match else (text, "")
    field = path.lstrip(".")
    if named := _NAMED.search(reason):
        field = f"{field}.{named['name']}" if field else named["name"]
    return field, reason
