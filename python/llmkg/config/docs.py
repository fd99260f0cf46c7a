"""The configuration reference, generated from the schema.

``python -m llmkg.config.docs > docs/reference/configuration.md`` writes the page; a test
fails when the committed page differs from this module's output. Every key's TOML path,
type, default and environment variable come from the ``msgspec`` structs in
``llmkg.config.schema``; what a key does comes from the comments beside it in that file
(the lines directly above a field and the comment at its end) and from a section's
docstring.
"""

from __future__ import annotations

import ast
import inspect
import io
import math
import sys
import tokenize
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

import msgspec

from llmkg.config import schema
from llmkg.config.loader import ENV_PREFIX, ENV_SHORTCUTS
from llmkg.config.units import ByteSize, Duration

_ROOT = schema.Settings


@dataclass(frozen=True)
class Key:
    path: tuple[str, ...]
    type: str
    default: str
    description: str
    inactive: bool

    @property
    def dotted(self) -> str:
        return ".".join(self.path)

    @property
    def env(self) -> str:
        return ENV_PREFIX + "__".join(p.upper() for p in self.path)


@dataclass(frozen=True)
class Table:
    path: tuple[str, ...]
    description: str
    inactive: bool
    keys: list[Key]


def _clean(text: str) -> str:
    """A comment as prose: the ``llmkg:`` marker of llmkg's own keys dropped."""
    text = " ".join(text.split())
    for marker in ("llmkg:", "llmkg"):
        if text == marker or text.startswith(marker + " "):
            text = text[len(marker) :].strip()
    return text[:1].upper() + text[1:]


def _comments(source: str) -> dict[int, str]:
    """Comment text by line number."""
    found: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            found[tok.start[0]] = tok.string.lstrip("#").strip()
    return found


def field_comments(cls: type) -> dict[str, str]:
    """What the source says of each field of ``cls``: the comment lines directly above it
    and the comment at the end of its statement, joined."""
    source = inspect.getsource(cls)
    comments = _comments(source)
    lines = source.splitlines()
    tree = ast.parse(source)
    node = tree.body[0]
    assert isinstance(node, ast.ClassDef)
    out: dict[str, str] = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        above: list[str] = []
        line = stmt.lineno - 1
        while line >= 1 and lines[line - 1].lstrip().startswith("#"):
            above.insert(0, comments[line])
            line -= 1
        end = stmt.end_lineno or stmt.lineno
        trailing = [comments[n] for n in range(stmt.lineno, end + 1) if n in comments]
        out[stmt.target.id] = _clean(" ".join(above + trailing))
    return out


def _meta_bounds(metas: list[msgspec.Meta]) -> str:
    parts: list[str] = []
    for meta in metas:
        if meta.ge is not None and meta.le is not None:
            parts.append(f"{meta.ge} to {meta.le}")
        elif meta.gt is not None and meta.le is not None:
            parts.append(f"over {meta.gt}, at most {meta.le}")
        elif meta.ge is not None:
            parts.append(f"≥ {meta.ge}")
        elif meta.gt is not None:
            parts.append(f"> {meta.gt}")
        elif meta.le is not None:
            parts.append(f"≤ {meta.le}")
        if meta.min_length is not None:
            parts.append("not empty")
        if meta.pattern is not None:
            parts.append(f"matches `{meta.pattern}`")
    return ", ".join(parts)


def type_name(hint: Any) -> str:
    """A field's type as a reader of TOML sees it."""
    if get_origin(hint) is typing.Annotated:
        base, *extra = get_args(hint)
        bounds = _meta_bounds([m for m in extra if isinstance(m, msgspec.Meta)])
        name = type_name(base)
        return f"{name} ({bounds})" if bounds else name
    if get_origin(hint) is Literal:
        return " or ".join(f'`"{v}"`' for v in get_args(hint))
    if get_origin(hint) is list:
        return f"list of {type_name(get_args(hint)[0])}"
    if get_origin(hint) is dict:
        k, v = get_args(hint)
        return f"table of {type_name(k)} to {type_name(v)}"
    names = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        Duration: "duration",
        ByteSize: "size",
    }
    if hint in names:
        return names[hint]
    raise TypeError(f"no reader's name for the type {hint!r}")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f'"{int(seconds // size)}{unit}"'
    if seconds == 0:
        return '"0s"'
    return f'"{round(seconds * 1000)}ms"'


def _size(size: int) -> str:
    if size == 0:
        return "0"
    for unit, scale in (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size % scale == 0:
            return f'"{size // scale}{unit}"'
    return str(size)


def toml_value(value: Any) -> str:
    """A default as it would be written in the TOML file."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Duration):
        return _duration(float(value))
    if isinstance(value, ByteSize):
        return _size(int(value))
    if isinstance(value, int):
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        assert math.isfinite(value)
        return repr(value)
    if isinstance(value, str):
        return '""' if value == "" else f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(str(v) if type(v) is int else toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML form for {value!r}")


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, schema.Section)


def _inactive(path: tuple[str, ...]) -> bool:
    dotted = ".".join(path)

    def under(keys: tuple[str, ...]) -> bool:
        return any(dotted == key or dotted.startswith(key + ".") for key in keys)

    return under(schema.INACTIVE) and not under(schema.ACTIVE_IN_INACTIVE)


def tables(cls: type = _ROOT, path: tuple[str, ...] = ()) -> Iterator[Table]:
    """Every TOML table of the schema with its keys, in the schema's order."""
    hints = typing.get_type_hints(cls, include_extras=True)
    comments = field_comments(cls)
    defaults = cls()
    keys: list[Key] = []
    nested: list[tuple[type, tuple[str, ...]]] = []
    for field in msgspec.structs.fields(cls):
        hint = hints[field.name]
        sub = (*path, field.name)
        if _is_section(hint):
            nested.append((hint, sub))
            continue
        keys.append(
            Key(
                path=sub,
                type=type_name(hint),
                default=toml_value(getattr(defaults, field.name)),
                description=comments.get(field.name, ""),
                inactive=_inactive(sub),
            )
        )
    if path:
        doc = inspect.getdoc(cls) if cls.__doc__ else ""
        yield Table(path, _clean(doc or ""), _inactive(path), keys)
    for sub_cls, sub_path in nested:
        yield from tables(sub_cls, sub_path)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


_HEADER = """\
# Configuration reference

<!-- Generated by `python -m llmkg.config.docs` from python/llmkg/config/schema.py;
     tests/test_docs.py fails when this page and the schema disagree. Do not edit. -->

Every key of llmkg's configuration, its type and its default. The defaults are the values
of `config/production.toml`; the server without `--config` uses them with TLS,
authentication, distribution and tracing off and data under `./data`
(see [Configuration](../configuration.md) for the layers, units and errors).

Each key can also be set by an environment variable: its TOML path in upper case, each
part after `LLMKG__` joined by `__` (read as a TOML value when it parses, else as text).
{shortcuts}, `LLMKG_CONFIG_PATH`
names the base file and `LLMKG_ENVIRONMENT` the overlay.

Types: a *duration* is `"250ms"`, `"30s"`, `"5m"`, `"1h"` or `"7d"` (a bare number is
seconds); a *size* is `"512KB"`, `"64MB"` or `"1GB"` in binary units (1 KB = 1024 bytes;
a bare number is bytes). Keys marked **not yet active** are validated but not acted on:
the parts they configure do not exist yet.
"""


def render() -> str:
    shortcuts = ", ".join(f"`{name}` sets `{key}`" for name, key in ENV_SHORTCUTS.items())
    out = [_HEADER.format(shortcuts=shortcuts[0].upper() + shortcuts[1:])]
    for table in tables():
        out.append(f"\n## `[{'.'.join(table.path)}]`\n")
        if table.inactive:
            active = [f"`{k.path[-1]}`" for k in table.keys if not k.inactive]
            but = f", except {', '.join(active)}" if active else ""
            out.append(f"\n**Not yet active**{but}.\n")
        if table.description:
            out.append(f"\n{table.description}\n")
        if not table.keys:
            continue
        out.append("\n| TOML path | type | default | environment variable | what it does |\n")
        out.append("| --- | --- | --- | --- | --- |\n")
        for key in table.keys:
            what = key.description
            if key.inactive and not table.inactive:
                what = f"**Not yet active.** {what}".strip()
            out.append(
                f"| `{key.dotted}` | {_cell(key.type)} | `{_cell(key.default)}` "
                f"| `{key.env}` | {_cell(what)} |\n"
            )
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    del argv
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
