"""The engine and the server on the PostgreSQL store: allocate, search, delete, restart
from a snapshot plus the changes after it, refused backups, a real server process, and a
DSN whose password no output shows."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pglib import PASSWORD, cluster
from serverlib import Server, cli, fact

from llmkg.config import engine_config, load_settings
from llmkg.engine import AllocationEngine, EngineConfig
from llmkg.store import BackupUnsupportedError, open_store
from llmkg.store.postgres import PostgresStore

DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def config(tmp_path: Path, dsn: str) -> EngineConfig:
    return EngineConfig(
        data_directory=tmp_path / "data",
        backup_directory=tmp_path / "backups",
        dim=DIM,
        direct_threshold=20,
        checkpoint_interval=0,
        store_backend="postgresql",
        postgres_dsn=dsn,
        postgres_pool_size=4,
    )


def allocate(engine: AllocationEngine, i: int) -> int:
    f = {"subject": f"s{i}", "predicate": "p", "object": f"o{i}", "confidence": 0.5}
    return engine.allocate({**f, "embedding": unit(i).tolist()}).node_id


def test_the_engine_end_to_end_and_across_restarts(tmp_path: Path, pg_dsn: str) -> None:
    with AllocationEngine(config(tmp_path, pg_dsn)) as engine:
        ids = {i: allocate(engine, i) for i in range(60)}
        again = engine.allocate(
            {"subject": "s3", "predicate": "p", "object": "o3", "confidence": 1}
        )
        assert not again.created and again.node_id == ids[3] and again.confidence == 1.0
        hits = engine.search(embedding=unit(7).tolist(), k=3)
        assert hits[0].node_id == ids[7] and hits[0].node.subject == "s7"
        assert engine.delete(ids[5]) and engine.get(ids[5]) is None
        assert engine.stats()["store"]["last_seq"] == 62
    # Closed with a final snapshot (sequence 62); more writes reach the store while no
    # engine runs (as another process's would): the restart replays them.
    with PostgresStore(pg_dsn) as other:
        extra, _ = other.insert("s100", "p", "o100", 0.5, unit(100))
        assert other.delete(ids[6])
    with AllocationEngine(config(tmp_path, pg_dsn)) as engine:
        assert engine.startup["source"] == "snapshot"
        assert engine.startup["snapshot_seq"] == 62 and engine.startup["replayed"] == 2
        for i, node_id in ids.items():
            node = engine.get(node_id)
            if i in (5, 6):
                assert node is None
            else:
                assert node is not None and node.subject == f"s{i}"
                assert engine.search(embedding=unit(i).tolist(), k=1)[0].node_id == node_id
        assert engine.search(embedding=unit(100).tolist(), k=1)[0].node_id == extra.node_id
        assert engine.get(ids[3]).confidence == 1.0
        created = engine.allocate(
            {"subject": "s5", "predicate": "p", "object": "o5", "confidence": 0.5}
        )
        assert created.created and created.node_id not in ids.values()
    # Without a snapshot (a new pod's empty data directory): rebuilt from the store alone.
    with AllocationEngine(config(tmp_path / "fresh", pg_dsn)) as engine:
        assert engine.startup["source"] == "rebuild" and len(engine.index) == 60
        assert engine.search(embedding=unit(9).tolist(), k=1)[0].node_id == ids[9]


def test_a_backup_of_the_engine_is_refused_before_any_file(tmp_path: Path, pg_dsn: str) -> None:
    with AllocationEngine(config(tmp_path, pg_dsn)) as engine:
        allocate(engine, 1)
        with pytest.raises(BackupUnsupportedError, match="pg_dump"):
            engine.backup()
        with pytest.raises(BackupUnsupportedError):
            engine.backup(tmp_path / "explicit")
    assert not (tmp_path / "backups").exists() and not (tmp_path / "explicit").exists()


def test_a_server_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    env = {"LLMKG__STORAGE__BACKEND": "postgresql", "LLMKG__STORAGE__POSTGRESQL__DSN": pg_dsn}
    with Server(tmp_path, env) as server:
        made = [server.post("/api/v1/allocate", {"fact": fact(i)}).json() for i in range(5)]
        assert all(m["created"] for m in made)
        query = {"query": {"embedding": fact(2)["embedding"], "k": 1}}
        hits = server.post("/api/v1/search", query)
        assert hits.status_code == 200, hits.text
        assert hits.json()["results"][0]["node_id"] == made[2]["node_id"]
        got = server.client.get(f"/api/v1/nodes/{made[4]['node_id']}")
        assert got.status_code == 200 and got.json()["fact"]["subject"] == "s4"
    assert PASSWORD not in server.logs()
    with PostgresStore(pg_dsn) as store:
        assert store.count() == 5, "the facts are in the database"


def test_a_dsn_file_and_an_unreadable_one(tmp_path: Path, pg_dsn: str) -> None:
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(pg_dsn + "\n")
    env = {
        "LLMKG__STORAGE__BACKEND": "postgresql",
        "LLMKG__STORAGE__POSTGRESQL__DSN_FILE": str(dsn_file),
    }
    with Server(tmp_path / "a", env) as server:
        assert server.post("/api/v1/allocate", {"fact": fact(1)}).json()["created"]
    missing = {**env, "LLMKG__STORAGE__POSTGRESQL__DSN_FILE": str(tmp_path / "none")}
    server = Server(tmp_path / "b", missing).start(wait=None)
    try:
        assert server.proc is not None
        code = server.proc.wait(60)  # it exits on its own: a config that cannot work
    finally:
        server.stop()
    assert code == 2, server.logs()
    assert "dsn_file" in server.logs() and "cannot read" in server.logs()


@pytest.mark.parametrize(
    "dsn",
    [
        f"postgresql://llmkg:{PASSWORD}@db.example:5432/llmkg?sslmode=require",
        f"host=db.example dbname=llmkg user=llmkg password={PASSWORD}",
        f"host=db.example password='{PASSWORD} x' dbname=llmkg",
    ],
)
def test_check_config_masks_the_password(dsn: str) -> None:
    env = {"LLMKG__STORAGE__BACKEND": "postgresql", "LLMKG__STORAGE__POSTGRESQL__DSN": dsn}
    done = cli("--check-config", env=env)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "db.example" in done.stdout, "the rest of the DSN stays readable"


def test_postgresql_needs_a_dsn() -> None:
    done = cli("--check-config", env={"LLMKG__STORAGE__BACKEND": "postgresql"})
    assert done.returncode == 2 and "storage.postgresql.dsn" in done.stderr


def test_the_server_answers_503_while_the_database_is_away(tmp_path: Path) -> None:
    with cluster() as own:
        env = {
            "LLMKG__STORAGE__BACKEND": "postgresql",
            "LLMKG__STORAGE__POSTGRESQL__DSN": own.create_database(),
            "LLMKG__STORAGE__POSTGRESQL__CONNECT_TIMEOUT": "1s",
        }
        with Server(tmp_path, env) as server:
            assert server.post("/api/v1/allocate", {"fact": fact(1)}).status_code == 200
            backup = server.post("/api/v1/admin/backup", {})
            assert backup.status_code == 409 and "pg_dump" in backup.json()["error"]["message"]
            own.stop()
            away = server.post("/api/v1/allocate", {"fact": fact(2)})
            assert away.status_code == 503, away.text
            assert away.json()["error"]["code"] == "store_unavailable"
            assert server.client.get("/api/v1/nodes/12345").status_code == 503
            own.start()
            deadline = time.monotonic() + 60
            while server.post("/api/v1/allocate", {"fact": fact(2)}).status_code != 200:
                assert time.monotonic() < deadline, "the store did not come back"
        assert PASSWORD not in server.logs() and "unavailable" in server.logs()


def test_restore_refuses_a_postgresql_config(tmp_path: Path) -> None:
    env = {
        "LLMKG__STORAGE__BACKEND": "postgresql",
        "LLMKG__STORAGE__POSTGRESQL__DSN": f"postgresql://u:{PASSWORD}@127.0.0.1:1/db",
        "LLMKG__STORAGE__DATA_DIRECTORY": str(tmp_path / "data"),
    }
    done = cli("restore", str(tmp_path / "backup"), env=env)
    assert done.returncode == 1 and "storage.backend" in done.stderr
    assert PASSWORD not in done.stdout + done.stderr


def test_the_config_reaches_the_engine_and_the_store(tmp_path: Path, pg_dsn: str) -> None:
    dsn_file = tmp_path / "dsn"
    dsn_file.write_text(f"  {pg_dsn}\n")
    environ = {
        "LLMKG__STORAGE__BACKEND": "postgresql",
        "LLMKG__STORAGE__POSTGRESQL__DSN_FILE": str(dsn_file),
        "LLMKG__STORAGE__POSTGRESQL__POOL_SIZE": "3",
        "LLMKG__STORAGE__POSTGRESQL__CONNECT_TIMEOUT": "2s",
        "LLMKG__STORAGE__POSTGRESQL__STATEMENT_TIMEOUT": "250ms",
    }
    c = engine_config(load_settings(environ=environ))
    assert (c.store_backend, c.postgres_dsn, c.postgres_pool_size) == ("postgresql", pg_dsn, 3)
    assert (c.postgres_connect_timeout, c.postgres_statement_timeout) == (2.0, 0.25)
    assert PASSWORD not in repr(c)
    store = open_store(c)
    try:
        assert isinstance(store, PostgresStore) and store._pool.max_size == 3
        with store._pool.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("250ms",)
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(5)")
    finally:
        store.close()
    assert engine_config(load_settings(environ={})).store_backend == "sqlite"


def test_the_engine_closes_while_the_database_is_away(tmp_path: Path) -> None:
    """Unsaved read counts cannot reach the database: the engine still writes its final
    snapshot and closes the store, and starts from that snapshot once the database is back."""
    with cluster() as own:
        c = config(tmp_path, own.create_database())
        c.postgres_connect_timeout = 1.0
        engine = AllocationEngine(c)
        ids = [allocate(engine, i) for i in range(10)]
        assert engine.search(embedding=unit(3).tolist(), k=1)[0].node_id == ids[3]
        own.stop()
        engine.close()  # would raise, or leave the directory locked, if the reads stopped it
        own.start()
        with AllocationEngine(c) as again:
            assert again.startup["source"] == "snapshot" and again.startup["replayed"] == 0
            assert again.get(ids[3]) is not None


def test_a_server_started_before_its_database_waits_for_it(tmp_path: Path) -> None:
    """The database down at start: the server runs, is not ready, says why (in its log and
    its readiness), and becomes ready by itself once the database is up."""
    with cluster() as own:
        dsn = own.create_database()
        own.stop()
        env = {
            "LLMKG__STORAGE__BACKEND": "postgresql",
            "LLMKG__STORAGE__POSTGRESQL__DSN": dsn,
            "LLMKG__STORAGE__POSTGRESQL__CONNECT_TIMEOUT": "1s",
        }
        server = Server(tmp_path, env).start(wait="live")
        try:
            deadline = time.monotonic() + 60
            while True:
                ready = server.client.get("/health/ready")
                detail = ready.json()["checks"]["engine"]["detail"]
                if "unavailable" in detail:
                    break
                assert time.monotonic() < deadline, f"readiness never said why: {detail}"
                time.sleep(0.05)
            assert ready.status_code == 503
            assert "the store is unavailable" in server.logs()
            assert server.proc is not None and server.proc.poll() is None, "it did not exit"
            own.start()
            server.wait("ready")
            assert server.post("/api/v1/allocate", {"fact": fact(1)}).status_code == 200
        finally:
            server.stop()
        assert PASSWORD not in server.logs()
