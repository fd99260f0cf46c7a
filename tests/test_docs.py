"""The configuration reference in docs/ is the generator's output for the current schema."""

from __future__ import annotations

from pathlib import Path

import msgspec

from llmkg.config import docs, schema

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "configuration.md"
REGENERATE = "python -m llmkg.config.docs > docs/reference/configuration.md"


def _leaf_keys(cls: type, path: tuple[str, ...] = ()) -> list[str]:
    keys: list[str] = []
    for field in msgspec.structs.fields(cls):
        default = getattr(cls(), field.name)
        if isinstance(default, schema.Section):
            keys += _leaf_keys(type(default), (*path, field.name))
        else:
            keys.append(".".join((*path, field.name)))
    return keys


def test_committed_page_is_the_generators_output() -> None:
    assert PAGE.read_text() == docs.render(), f"the page is stale: run `{REGENERATE}`"


def test_every_key_is_listed_with_what_it_does() -> None:
    listed = {key.dotted: key for table in docs.tables() for key in table.keys}
    assert sorted(listed) == sorted(_leaf_keys(schema.Settings))
    undescribed = [name for name, key in listed.items() if not key.description]
    assert not undescribed, f"say what these keys do in schema.py: {undescribed}"


def test_environment_variables_follow_the_loader() -> None:
    key = next(k for t in docs.tables() for k in t.keys if k.dotted == "server.http_port")
    assert key.env == "LLMKG__SERVER__HTTP_PORT"
    assert key.default == "8080"


def test_inactive_keys_are_marked() -> None:
    inactive = {k.dotted for t in docs.tables() for k in t.keys if k.inactive}
    assert "monitoring.enable_profiling" in inactive
    assert "monitoring.jaeger.agent_endpoint" in inactive
    # Acted on: the partition layer's keys, and one key of an inactive section.
    assert "server.grpc_port" not in inactive
    assert "scalability.distribution.partition_count" not in inactive
    assert "monitoring.jaeger.tags" not in inactive
