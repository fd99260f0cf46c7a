"""Export and import over real processes: ``GET /api/v1/export`` streams every fact as
NDJSON (the lines fit the OpenAPI document), ``llmkg-server export`` and ``import`` carry
a graph from one store to another (SQLite and PostgreSQL; files and pipes), refuse a
store with facts, a bad line and a store a server runs on, and the long commands show
their progress."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from serverlib import SERVER, Server, cli, fact
from starlette.requests import Request
from test_exchange import Spy, small  # noqa: F401 (a fixture)

from llmkg.engine import AllocationEngine, EngineConfig, exchange

Triple = tuple[str, str, str]
PARENTS = {"LLMKG__ALLOCATION__SIMILARITY_THRESHOLD": "-1"}  # every fact gets a parent


def allocate(server: Server, n: int, start: int = 0) -> None:
    for first in range(start, start + n, 1000):
        facts = [fact(i, confidence=(i % 10) / 10) for i in range(first, min(first + 1000, n))]
        response = server.post("/api/v1/allocate/batch", {"facts": facts})
        assert response.status_code == 200, response.text


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def graph(lines: list[dict[str, Any]]) -> dict[Triple, tuple[float, Triple | None]]:
    """A graph by triple: confidence and parent triple (ids differ between stores)."""
    out = {}
    for f in lines:
        parent = f["parent"]
        out[(f["subject"], f["predicate"], f["object"])] = (
            f["confidence"],
            (parent["subject"], parent["predicate"], parent["object"]) if parent else None,
        )
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("export"), PARENTS) as s:
        allocate(s, 2500)  # more than a page (1000 facts)
        yield s


def test_the_route_streams_every_fact_by_id_as_its_document_says(server: Server) -> None:
    with server.client.stream("GET", "/api/v1/export") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        got = [json.loads(line) for line in response.iter_lines() if line]
    assert len(got) == 2500
    ids = [f["id"] for f in got]
    assert ids == sorted(set(ids))
    assert sum(1 for f in got if f["parent"]) == 2499, "each fact but the first has a parent"
    doc = server.client.get("/openapi.json").json()
    answer = doc["paths"]["/api/v1/export"]["get"]["responses"]["200"]["content"]
    schema = {"components": doc["components"], **answer["application/x-ndjson"]["schema"]}
    for line in got[:50]:
        jsonschema.validate(line, schema)
    assert "embedding" not in got[0]
    by_id = {f["id"]: f for f in got}
    child = next(f for f in got if f["parent"])
    parent = by_id[child["parent"]["id"]]
    assert child["parent"] == {k: parent[k] for k in ("id", "subject", "predicate", "object")}


def test_the_route_gives_the_stored_vectors_on_request(server: Server) -> None:
    got = lines_of(server.client.get("/api/v1/export?embedding=true").text)
    assert len(got) == 2500
    for line in got[:20]:
        i = int(line["subject"][1:])
        sent = np.asarray(fact(i)["embedding"], dtype=np.float32)
        assert np.array_equal(np.asarray(line["embedding"], dtype=np.float32), sent)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("embedding=yes", "embedding"),
        ("limit=5", "limit"),
        ("embedding=true&embedding=true", "embedding"),
    ],
)
def test_the_route_refuses_bad_parameters_by_name(server: Server, query: str, field: str) -> None:
    response = server.client.get(f"/api/v1/export?{query}")
    assert response.status_code == 422
    assert response.json()["error"]["field"] == field


def test_the_route_reads_a_page_only_when_the_client_took_the_last(
    small: AllocationEngine,  # noqa: F811 (the fixture)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmkg.server.exportapi import ExportApi

    monkeypatch.setattr(exchange, "PAGE", 100)
    spy = Spy(small.store)

    class State:
        def graph_reads(self) -> Any:
            return type("Engine", (), {"store": spy})()

        async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
            return fn(*args)

    async def consume() -> list[int]:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/api/v1/export",
            "query_string": b"",
            "headers": [],
        }
        response: Any = await ExportApi(State()).export(Request(scope))  # type: ignore[arg-type]
        reads = [spy.pages]  # the first page, read before the answer starts
        async for _ in response.body_iterator:
            reads.append(spy.pages)
        return reads

    # 250 facts in pages of 100: each page is sent before the next is read.
    assert asyncio.run(consume()) == [1, 1, 2, 3]


def env_for(data: Path) -> dict[str, str]:
    return {
        "LLMKG__STORAGE__DATA_DIRECTORY": str(data),
        "LLMKG__SCALABILITY__HNSW__DIMENSION": "16",
    }


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory with 1200 facts and no server on it, and its export by HTTP."""
    tmp = tmp_path_factory.mktemp("stopped")
    with Server(tmp, PARENTS) as s:
        allocate(s, 1200)
        s.client.delete("/api/v1/nodes/7")
        exported = s.client.get("/api/v1/export").text
    return s.data, exported


def test_a_graph_carried_by_file_and_by_pipe_is_the_same(
    stopped: tuple[Path, str], tmp_path: Path
) -> None:
    data, by_http = stopped
    out = tmp_path / "graph.ndjson"
    done = cli("export", str(out), "--progress-interval", "0", env=env_for(data))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["facts"] == 1199
    assert "exporting: 1199 of 1199 facts (100%)" in done.stderr
    assert out.read_text() == by_http, "the command writes what the route answers"

    target = tmp_path / "target"
    done = cli("import", str(out), "--progress-interval", "0", env=env_for(target))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["created"], summary["merged"], summary["unlinked"]) == (1199, 0, 0)
    assert "importing: 1000 of 1199 facts (83%)" in done.stderr
    assert "rebuilding the index" in done.stderr, "the index is built before the command ends"
    with Server(tmp_path / "again", {"LLMKG__STORAGE__DATA_DIRECTORY": str(target)}) as s:
        assert s.client.get("/api/v1/stats").json()["startup"]["source"] == "snapshot"
        again = lines_of(s.client.get("/api/v1/export").text)
    assert graph(again) == graph(lines_of(by_http))

    # export - | import -
    piped = tmp_path / "piped"
    exporter = subprocess.Popen(
        [*SERVER, "export", "-"],
        env=full_env(env_for(data)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    importer = subprocess.run(
        [*SERVER, "import", "-"],
        env=full_env(env_for(piped)),
        stdin=exporter.stdout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert exporter.stdout is not None
    exporter.stdout.close()
    assert exporter.wait(60) == 0 and importer.returncode == 0, importer.stderr
    assert json.loads(exporter.stderr.read())["facts"] == 1199, "the summary goes to stderr"
    done = cli("export", "-", env=env_for(piped))
    assert graph(lines_of(done.stdout)) == graph(lines_of(by_http))


def full_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.pop("LLMKG_CONFIG_PATH", None)
    env.pop("LLMKG_ENVIRONMENT", None)
    return env


def test_an_import_refuses_a_store_with_facts_and_a_bad_line(
    stopped: tuple[Path, str], tmp_path: Path
) -> None:
    _, by_http = stopped
    good = tmp_path / "good.ndjson"
    good.write_text(by_http)
    target = tmp_path / "target"
    assert cli("import", str(good), env=env_for(target)).returncode == 0
    done = cli("import", str(good), env=env_for(target))
    assert done.returncode == 1 and "holds 1199 facts" in done.stderr and "--merge" in done.stderr
    raised = good.read_text().replace('"confidence":0.1', '"confidence":0.15')
    good.write_text(raised)
    done = cli("import", str(good), "--merge", env=env_for(target))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["created"], summary["merged"]) == (0, 1199)

    bad = tmp_path / "bad.ndjson"
    lines = by_http.splitlines()
    bad.write_text("\n".join([lines[0], lines[1].replace('"confidence":', '"confidence":-')]))
    empty = tmp_path / "empty"
    done = cli("import", str(bad), env=env_for(empty))
    assert done.returncode == 1
    assert "line 2, field confidence: must be between 0 and 1" in done.stderr
    assert "nothing was imported" in done.stderr
    done = cli("export", "-", env=env_for(empty))
    assert done.returncode == 0 and done.stdout == ""
    missing = cli("export", "-", env=env_for(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no store in" in missing.stderr


def test_the_commands_refuse_a_store_a_server_runs_on(tmp_path: Path) -> None:
    file = tmp_path / "f.ndjson"
    file.write_text('{"subject": "a", "predicate": "p", "object": "b", "confidence": 0.5}\n')
    with Server(tmp_path) as s:
        env = env_for(s.data)
        done = cli("export", str(tmp_path / "out.ndjson"), env=env)
        assert done.returncode == 1 and "in use by a running server" in done.stderr
        assert "GET /api/v1/export" in done.stderr
        assert not (tmp_path / "out.ndjson").exists()
        done = cli("import", str(file), env=env)
        assert done.returncode == 1 and "in use by a running server" in done.stderr


def test_offline_backup_and_restore_show_their_progress(
    stopped: tuple[Path, str], tmp_path: Path
) -> None:
    data, _ = stopped
    env = {**env_for(data), "LLMKG__STORAGE__BACKUP_DIRECTORY": str(tmp_path / "backups")}
    done = cli("backup", "--progress-interval", "0", env=env)
    assert done.returncode == 0, done.stderr
    assert "copying the store:" in done.stderr and "checksumming the backup:" in done.stderr
    folder = json.loads(done.stdout)["path"]
    done = cli("restore", folder, "--progress-interval", "0", env=env_for(tmp_path / "restored"))
    assert done.returncode == 0, done.stderr
    assert "checking the backup:" in done.stderr and "restoring:" in done.stderr
    assert "(100%)" in done.stderr


def test_the_commands_on_postgresql(tmp_path: Path, pg_cluster: Any) -> None:
    source, target = pg_cluster.create_database(), pg_cluster.create_database()
    config = EngineConfig(
        data_directory=tmp_path / "engine",
        dim=16,
        checkpoint_interval=0,
        store_backend="postgresql",
        postgres_dsn=source,
        similarity_threshold=-1.0,
    )
    with AllocationEngine(config) as engine:
        engine.allocate_many([fact(i) for i in range(300)])

    def env(dsn: str, data: str) -> dict[str, str]:
        return {
            **env_for(tmp_path / data),
            "LLMKG__STORAGE__BACKEND": "postgresql",
            "LLMKG__STORAGE__POSTGRESQL__DSN": dsn,
        }

    out = tmp_path / "pg.ndjson"
    done = cli("export", str(out), "--embedding", env=env(source, "a"))
    assert done.returncode == 0, done.stderr
    done = cli("import", str(out), env=env(target, "b"))
    assert done.returncode == 0, done.stderr
    assert "index_seconds" not in json.loads(done.stdout), "pods index a shared store"
    again = cli("export", "-", "--embedding", env=env(target, "c"))
    before, after = lines_of(out.read_text()), lines_of(again.stdout)
    assert graph(after) == graph(before) and sum(1 for f in before if f["parent"]) == 299
    assert [f["embedding"] for f in after] == [f["embedding"] for f in before]
