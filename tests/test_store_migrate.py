"""``llmkg-server migrate``: schema upgrades as an explicit step (and ``auto_migrate =
false``, which refuses an older store), and the copy of an SQLite store into PostgreSQL
with its ids, sequences, tombstones, read counters, parents and confidences."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import psycopg
import pytest
from pglib import PASSWORD
from serverlib import Server, cli

from llmkg.config import engine_config, load_settings
from llmkg.engine import AllocationEngine, EngineConfig
from llmkg.progress import Progress
from llmkg.store import SqliteStore, StoreOpenError, StoreOutdatedError, open_store
from llmkg.store.migrate import TargetNotEmptyError, copy_sqlite
from llmkg.store.pgschema import SCHEMA_VERSION
from llmkg.store.postgres import PostgresStore
from llmkg.store.schema import FORMAT_VERSION

FIXTURES = Path(__file__).parent / "fixtures"
DIM = 16


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def digest(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` by its bytes: a copy must leave the source as it was."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def fixture(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(FIXTURES / name, target)
    return target


def pg_env(dsn: str, **more: str) -> dict[str, str]:
    return {"LLMKG__STORAGE__BACKEND": "postgresql", "LLMKG__STORAGE__POSTGRESQL__DSN": dsn, **more}


def quiet(done: object) -> str:
    """stdout and stderr of a finished command, checked for the password on the way."""
    out = f"{done.stdout}{done.stderr}"  # type: ignore[attr-defined]
    assert PASSWORD not in out
    return out


def make_sqlite_store(directory: Path, n: int = 300) -> dict[int, int]:
    """``n`` facts written through the store: every third with a parent, every fifth
    raised, every seventh deleted, read counters on some. Returns index -> node id."""
    ids: dict[int, int] = {}
    with SqliteStore(directory) as store:
        for i in range(n):
            parent = ids[i - 1] if i % 3 == 0 and i else None
            record, _ = store.insert(f"s{i}", "p", f"o{i}", 0.5, unit(i), parent=parent)
            ids[i] = record.node_id
        for i in range(0, n, 5):
            store.raise_confidence(ids[i], 0.9)
        store.add_reads({ids[i]: i + 1 for i in range(0, n, 4)})
        for i in range(0, n, 7):
            assert store.delete(ids[i])
    return ids


def test_a_copy_keeps_ids_sequences_tombstones_and_counters(tmp_path: Path, pg_dsn: str) -> None:
    source = tmp_path / "sqlite"
    ids = make_sqlite_store(source)
    before = digest(source)
    reports: list[Progress] = []

    def reporter(what: str, total: int | None, unit: str) -> Progress:
        reports.append(Progress(logging.getLogger("test"), what, total=total, unit=unit))
        return reports[-1]

    summary = copy_sqlite(source, pg_dsn, progress=reporter)
    assert digest(source) == before, "the source is opened read-only"
    assert [(r.what, r.total, r.unit, r.count) for r in reports] == [
        ("copying rows", 300, "rows", 300)
    ]
    deleted = len(range(0, 300, 7))
    assert (summary["nodes"], summary["deleted"]) == (300 - deleted, deleted)
    with SqliteStore(source) as lite, PostgresStore(pg_dsn) as pg:
        assert summary["last_seq"] == lite.last_seq == pg.last_seq
        assert pg.count() == lite.count() == 300 - deleted
        # Seq for seq: the same live records (reads, parents, confidences) and tombstones.
        old, new = list(lite.changes_after(0)), list(pg.changes_after(0))
        assert [(c.seq, c.node_id) for c in old] == [(c.seq, c.node_id) for c in new]
        assert [c.record for c in old] == [c.record for c in new]
        for a, b in zip(old, new, strict=True):
            if a.record is not None and b.record is not None:
                assert a.record.embedding.tobytes() == b.record.embedding.tobytes()
        assert sum(c.record is None for c in new) == deleted
        for i, node_id in ids.items():
            got = pg.get(node_id)
            if i % 7 == 0:
                assert got is None
                continue
            assert got is not None and got == lite.get(node_id)
            assert (got.subject, got.object) == (f"s{i}", f"o{i}")
            assert got.confidence == (0.9 if i % 5 == 0 else 0.5)
            # A deleted parent's children take its parent: none here (i - 1 is not a
            # multiple of 3 when i is).
            parented = i % 3 == 0 and i and (i - 1) % 7
            assert got.parent == (ids[i - 1] if parented else None)
            assert got.reads == (i + 1 if i % 4 == 0 else 0)
            assert got.embedding.tobytes() == unit(i).tobytes()
        assert pg.find("s1", "p", "o1") == lite.find("s1", "p", "o1")
        # A deleted triple may be stored again: tombstones do not hold the unique index.
        again, created = pg.insert("s0", "p", "o0", 0.5, unit(0))
        assert created and again.node_id > max(ids.values())
        assert again.seq == summary["last_seq"] + 1 == pg.last_seq
        lite_id = lite.store_id
    with psycopg.connect(pg_dsn) as conn:
        meta = dict(conn.execute("SELECT key, value FROM llmkg_meta").fetchall())
    assert meta["store_id"] != lite_id, "a migrated database is a new store"
    assert lite_id in meta["migrated_from"]


def test_a_store_left_with_its_log_is_copied_with_it(tmp_path: Path, pg_dsn: str) -> None:
    """Writes still in ``-wal`` (a store not closed: a crash) are copied too, through a
    temporary copy of the file and its log; the source stays as it is."""
    store = SqliteStore(tmp_path / "sqlite")
    try:
        for i in range(5):
            store.insert(f"s{i}", "p", f"o{i}", 0.5, unit(i))
        assert (tmp_path / "sqlite" / "llmkg.sqlite3-wal").stat().st_size > 0
        before = digest(tmp_path / "sqlite")
        summary = copy_sqlite(tmp_path / "sqlite", pg_dsn)
        assert digest(tmp_path / "sqlite") == before
    finally:
        store.close()
    assert (summary["nodes"], summary["last_seq"]) == (5, 5)
    with PostgresStore(pg_dsn) as pg:
        assert pg.count() == 5 and pg.find("s4", "p", "o4") is not None


def test_an_engine_finds_everything_on_the_migrated_database(tmp_path: Path, pg_dsn: str) -> None:
    lite = EngineConfig(
        data_directory=tmp_path / "sqlite", dim=DIM, direct_threshold=20, checkpoint_interval=0
    )
    with AllocationEngine(lite) as engine:
        ids = {
            i: engine.allocate(
                {
                    "subject": f"s{i}",
                    "predicate": "p",
                    "object": f"o{i}",
                    "confidence": 0.5,
                    "embedding": unit(i).tolist(),
                }
            ).node_id
            for i in range(80)
        }
        gone = {3, 40, 77}
        for i in gone:
            assert engine.delete(ids[i])
    assert list((tmp_path / "sqlite" / "snapshots").iterdir()), "closed with a snapshot"
    copy_sqlite(tmp_path / "sqlite", pg_dsn)
    # The SQLite data directory, snapshots and all, reused by the PostgreSQL engine: its
    # snapshots name another store, so the index is rebuilt from the database.
    shutil.copytree(tmp_path / "sqlite", tmp_path / "pg")
    pg = EngineConfig(
        data_directory=tmp_path / "pg",
        dim=DIM,
        direct_threshold=20,
        checkpoint_interval=0,
        store_backend="postgresql",
        postgres_dsn=pg_dsn,
        postgres_pool_size=4,
    )
    with AllocationEngine(pg) as engine:
        assert engine.startup["source"] == "rebuild" and len(engine.index) == 80 - len(gone)
        for i, node_id in ids.items():
            node = engine.get(node_id)
            if i in gone:
                assert node is None
                continue
            assert node is not None and node.subject == f"s{i}"
            assert engine.search(embedding=unit(i).tolist(), k=1)[0].node_id == node_id
        hits = engine.search(text="s12 p o12", k=80)
        assert ids[12] in {h.node_id for h in hits}
        made = engine.allocate(
            {"subject": "new", "predicate": "p", "object": "o", "confidence": 0.5}
        )
        assert made.created and made.node_id > max(ids.values())


def test_a_non_empty_target_is_refused_unchanged(tmp_path: Path, pg_dsn: str) -> None:
    make_sqlite_store(tmp_path / "sqlite", n=20)
    # A server still running on the source: its later writes would be left behind.
    with AllocationEngine(EngineConfig(data_directory=tmp_path / "sqlite", dim=DIM)):
        with pytest.raises(StoreOpenError, match="in use by a running llmkg server"):
            copy_sqlite(tmp_path / "sqlite", pg_dsn)
    with PostgresStore(pg_dsn) as pg:
        kept, _ = pg.insert("kept", "p", "o", 0.5, unit(1))
    done = cli("migrate", "--from-sqlite", str(tmp_path / "sqlite"), env=pg_env(pg_dsn))
    assert done.returncode == 1 and "not empty" in quiet(done), done.stderr
    assert "Traceback" not in done.stderr
    with PostgresStore(pg_dsn) as pg:
        assert pg.count() == 1 and pg.last_seq == 1 and pg.get(kept.node_id) == kept
    # No node row, but sequence numbers given out (by another partition): refused too.
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("DELETE FROM llmkg_nodes")
        conn.execute("UPDATE llmkg_partitions SET last_seq = 0")
        conn.execute("INSERT INTO llmkg_partitions VALUES (7, 3)")
    with pytest.raises(TargetNotEmptyError, match="sequence numbers up to 3"):
        copy_sqlite(tmp_path / "sqlite", pg_dsn)
    with PostgresStore(pg_dsn) as pg:
        assert pg.count() == 0 and pg.last_seq == 0


def test_the_cli_copies_the_first_format_and_upgrades_postgresql(
    tmp_path: Path, pg_dsn: str
) -> None:
    source = fixture("store-format0", tmp_path)
    before = digest(source)
    env = pg_env(pg_dsn)
    done = cli("migrate", "--from-sqlite", str(source), "--progress-interval", "0", env=env)
    out = quiet(done)
    assert done.returncode == 0, out
    # make_store_fixture.py: 12 facts, id 2 raised (seq 13), id 5 deleted (seq 14).
    summary = json.loads(done.stdout)
    assert (summary["nodes"], summary["deleted"], summary["last_seq"]) == (11, 1, 14)
    assert summary["seconds"] >= 0
    assert "copying rows: 10 of 12 rows (83%)" in done.stderr and "rows/s" in done.stderr
    assert digest(source) == before, "format 0 is migrated in a temporary copy only"
    with PostgresStore(pg_dsn) as pg:
        assert pg.count() == 11 and pg.get(5) is None and pg.last_seq == 14
        node = pg.get(2)
        assert node is not None and (node.subject, node.confidence) == ("entity2", 0.99)
    # Upgrades of the PostgreSQL schema: nothing to do, an older version, a newer one.
    done = cli("migrate", env=env)
    assert done.returncode == 0, quiet(done)
    assert json.loads(done.stdout) == {
        "backend": "postgresql",
        "from_version": SCHEMA_VERSION,
        "to_version": SCHEMA_VERSION,
    }
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE llmkg_meta SET value = '0' WHERE key = 'schema_version'")
    # The config's auto_migrate = false reaches the store: refused, the row left as it is.
    settings = load_settings(environ=pg_env(pg_dsn, LLMKG__STORAGE__AUTO_MIGRATE="false"))
    with pytest.raises(StoreOutdatedError, match="llmkg-server migrate"):
        open_store(engine_config(settings))
    done = cli("migrate", env=env)
    assert done.returncode == 0, quiet(done)
    assert json.loads(done.stdout)["from_version"] == 0
    with PostgresStore(pg_dsn, migrate=False) as pg:
        assert pg.count() == 11
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("UPDATE llmkg_meta SET value = '99' WHERE key = 'schema_version'")
    done = cli("migrate", env=env)
    assert done.returncode == 2 and "newer" in quiet(done)


def test_migrate_upgrades_an_older_sqlite_store_and_refuses_a_newer(tmp_path: Path) -> None:
    data = fixture("store-format0", tmp_path)
    env = {"LLMKG__STORAGE__DATA_DIRECTORY": str(data), "LLMKG__STORAGE__AUTO_MIGRATE": "false"}
    # auto_migrate off: a server facing the older store exits 2 and names the command.
    server = Server(tmp_path / "server", env, dim=8).start(wait=None)
    try:
        assert server.proc is not None
        code = server.proc.wait(60)
    finally:
        server.stop()
    assert code == 2 and "llmkg-server migrate" in server.logs(), server.logs()
    assert "Traceback" not in server.logs()
    with sqlite3.connect(data / "llmkg.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0, "left untouched"
    done = cli("migrate", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "backend": "sqlite",
        "from_version": 0,
        "to_version": FORMAT_VERSION,
    }
    with Server(tmp_path / "server", env, dim=8) as server:
        got = server.client.get("/api/v1/nodes/2")
        assert got.status_code == 200 and got.json()["fact"]["subject"] == "entity2"
    with sqlite3.connect(data / "llmkg.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    done = cli("migrate", env=env)
    assert done.returncode == 2 and "newer" in done.stderr and "Traceback" not in done.stderr
    done = cli("migrate", "--from-sqlite", str(data), env=env)
    assert done.returncode == 2 and "storage.backend" in done.stderr
    with sqlite3.connect(data / "llmkg.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
    with AllocationEngine(EngineConfig(data_directory=data, dim=8)):
        done = cli("migrate", env=env)
    assert done.returncode == 1 and "in use by a running llmkg server" in done.stderr
