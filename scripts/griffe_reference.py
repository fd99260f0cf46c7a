"""Griffe extensions of the Python API reference (mkdocs.yml).

- ``EngineConfigFields``: `EngineConfig`'s fields with their real defaults and what the
  comments beside them say. Read from source alone, a field's default is the schema
  expression it comes from (``_hnsw.ef_search``), which says nothing to a reader; the
  defaults live once, in the config schema, so they are taken from an ``EngineConfig()``.
- ``CoreConstructors``: the Rust classes' constructor signatures from the stubs. The
  extension module is inspected (its docstrings are the Rust ``///`` comments) and its
  stubs merged in, but an inspected ``__new__`` is ``object``'s, ``(*args, **kwargs)``;
  the stub's is given to the class as its ``__init__`` signature.

Both need the package importable, extension module included (``make docs`` builds it).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import griffe

try:
    from llmkg.config.docs import field_comments
    from llmkg.engine.config import EngineConfig
except ImportError as e:
    raise ImportError(
        f"the Python API reference needs llmkg importable, extension module included ({e});"
        " build it first: `make develop` (`make docs` does)"
    ) from e

TARGET = "llmkg.engine.config.EngineConfig"
# "--- storage ([storage], ...) ---": a heading of the source's groups of fields.
_GROUP = re.compile(r"--- .*? ---\s*")


def _shown(value: Any) -> str:
    if isinstance(value, Path):
        return f"Path({str(value)!r})"
    return repr(value)


class EngineConfigFields(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "llmkg":
            return
        cls = pkg.get_member(TARGET.removeprefix("llmkg."))
        comments = field_comments(EngineConfig)
        defaults = EngineConfig()
        for f in dataclasses.fields(EngineConfig):
            member = cls.members.get(f.name)
            if not isinstance(member, griffe.Attribute):
                continue
            if f.repr:  # a field kept out of repr (the DSN) keeps its expression too
                member.value = _shown(getattr(defaults, f.name))
            # "<data_directory>-backups" would read as an HTML tag in Markdown.
            text = _GROUP.sub("", comments.get(f.name, "")).strip().replace("<", "&lt;")
            if text:
                member.docstring = griffe.Docstring(text[:1].upper() + text[1:], parent=member)
        init = cls.members.get("__init__")
        if isinstance(init, griffe.Function):
            for param in init.parameters:
                if param.name in cls.members and param.default is not None:
                    param.default = cls.members[param.name].value


class CoreConstructors(griffe.Extension):
    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "llmkg":
            return
        core = pkg.get_member("_core")
        stubs = griffe.load(
            "llmkg._core",
            search_paths=[str(Path(str(pkg.filepath)).parents[1])],
            allow_inspection=False,
        )
        for name, stub in stubs.members.items():
            new = stub.members.get("__new__") if isinstance(stub, griffe.Class) else None
            if not isinstance(new, griffe.Function) or name not in core.members:
                continue
            params = [p for p in new.parameters if p.name != "cls"]
            init = griffe.Function("__init__", parameters=griffe.Parameters(*params))
            core.members[name].set_member("__init__", init)
