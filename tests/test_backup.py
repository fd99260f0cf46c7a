"""Backups and restores: a restore writes only a backup's own files, only into a data
directory without llmkg files and without an engine on it; retention keeps the newest."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from llmkg.engine import (
    AllocationEngine,
    BackupError,
    DataDirectoryInUseError,
    EngineConfig,
    restore,
)
from llmkg.engine.backup import MANIFEST, sha256
from llmkg.progress import Progress
from llmkg.store import SqliteStore, sqlitebulk

DIM = 8


def fact(i: int) -> dict[str, object]:
    v = np.random.default_rng(i).normal(size=DIM)
    return {
        "subject": f"s{i}",
        "predicate": "p",
        "object": f"o{i}",
        "confidence": 0.5,
        "embedding": (v / np.linalg.norm(v)).tolist(),
    }


@pytest.fixture
def config(tmp_path: Path) -> EngineConfig:
    return EngineConfig(
        data_directory=tmp_path / "data",
        backup_directory=tmp_path / "backups",
        backup_retention=2,
        dim=DIM,
        checkpoint_interval=0,
    )


@pytest.fixture
def backup(config: EngineConfig) -> Path:
    with AllocationEngine(config) as engine:
        for i in range(10):
            engine.allocate(fact(i))
        return engine.backup()


@pytest.mark.parametrize("name", ["../escaped", "/tmp/llmkg-escaped", "snapshots/../../escaped"])
def test_a_manifest_naming_a_file_outside_the_backup_is_refused(
    backup: Path, tmp_path: Path, name: str
) -> None:
    evil = backup / "evil"
    evil.write_bytes(b"x")
    manifest = json.loads((backup / MANIFEST).read_text())
    manifest["files"][name] = {"bytes": 1, "sha256": sha256(evil)}
    (backup / MANIFEST).write_text(json.dumps(manifest))
    target = tmp_path / "restored" / "data"
    with pytest.raises(BackupError, match="not a file of a backup"):
        restore(backup, target)
    assert not target.exists() or not any(target.iterdir())
    assert not (tmp_path / "restored" / "escaped").exists()
    assert not Path("/tmp/llmkg-escaped").exists()


@pytest.mark.parametrize("stale", ["llmkg.sqlite3-wal", "llmkg.sqlite3-shm", "snapshots/x"])
def test_a_restore_refuses_a_directory_holding_llmkg_files(
    backup: Path, tmp_path: Path, stale: str
) -> None:
    target = tmp_path / "target"
    (target / stale).parent.mkdir(parents=True, exist_ok=True)
    (target / stale).write_bytes(b"old")
    with pytest.raises(BackupError, match="already holds llmkg files"):
        restore(backup, target)
    assert not (target / "llmkg.sqlite3").exists()


def test_a_restore_refuses_a_directory_an_engine_has_open(
    backup: Path, config: EngineConfig, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    other = EngineConfig(data_directory=target, dim=DIM, checkpoint_interval=0)
    with AllocationEngine(other), pytest.raises(DataDirectoryInUseError):
        restore(backup, target)


def test_retention_keeps_the_newest_backups(config: EngineConfig, backup: Path) -> None:
    with AllocationEngine(config) as engine:
        later = [engine.backup() for _ in range(3)]
    kept = sorted(p for p in config.backup_directory.iterdir())  # type: ignore[union-attr]
    assert kept == later[-2:]
    assert not backup.exists()
    unrelated = config.backup_directory / "keep-me"  # type: ignore[operator]
    unrelated.mkdir()
    with AllocationEngine(config) as engine:
        engine.backup()
    assert unrelated.is_dir()


def test_a_restored_backup_opens_with_its_facts(backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    manifest = restore(backup, target)
    assert manifest["nodes"] == 10 and len(manifest["store_id"]) == 32
    config = EngineConfig(data_directory=target, dim=DIM, checkpoint_interval=0)
    with AllocationEngine(config) as engine:
        assert engine.startup["source"] == "snapshot"
        assert engine.store.store_id == manifest["store_id"]
        assert engine.store.count() == len(engine.index) == 10


class Reports:
    """Progress reporters that keep what they were told: (what, total, unit) -> counts."""

    def __init__(self) -> None:
        self.made: dict[str, Progress] = {}

    def __call__(self, what: str, total: int | None, unit: str) -> Progress:
        self.made[what] = Progress(logging.getLogger("llmkg.test"), what, total=total, unit=unit)
        return self.made[what]

    def final(self) -> dict[str, tuple[int, int | None]]:
        return {what: (p.count, p.total) for what, p in self.made.items()}


def test_a_backup_and_its_restore_report_their_progress(
    config: EngineConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlitebulk, "BACKUP_STEP", 2)  # a report every two pages
    with AllocationEngine(config) as engine:
        for i in range(300):
            engine.allocate(fact(i))
        copied: list[int] = []
        reports = Reports()
        real = Progress.update

        def seen(self: Progress, count: int) -> None:
            if self.what == "copying the store":
                copied.append(count)
            real(self, count)

        monkeypatch.setattr(Progress, "update", seen)
        folder = engine.backup(progress=reports)
    db = (folder / "llmkg.sqlite3").stat().st_size
    files = db + next((folder / "snapshots").iterdir()).stat().st_size
    assert reports.final() == {
        "copying the store": (db, db),
        "checksumming the backup": (files, files),
    }
    assert len(copied) > 3 and copied == sorted(copied), "the copy reports as it goes"
    reports = Reports()
    restore(folder, tmp_path / "restored", progress=reports)
    assert reports.final() == {"checking the backup": (files, files), "restoring": (files, files)}


def test_a_backup_in_steps_finishes_while_writes_go_on(tmp_path: Path) -> None:
    """Each step of SQLite's online backup starts over if another connection committed
    since the last one, unless the copy holds one snapshot throughout: without it, steady
    writes would keep a backup from ever finishing."""
    store = SqliteStore(tmp_path / "data")
    for i in range(200):
        store.insert(f"s{i}", "p", "o", 0.5, np.full(DIM, i + 1, dtype=np.float32))
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            store.insert(f"w{i}", "p", "o", 0.5, np.full(DIM, i, dtype=np.float32))

    writer = threading.Thread(target=write)
    writer.start()
    steps: list[int] = []

    def copied(done: int, total: int, page_size: int) -> None:
        steps.append(done)
        time.sleep(0.002)  # a step takes a while, as on a large store: writes commit between

    try:
        copier = threading.Thread(
            target=store.backup_to, args=(tmp_path / "copy.sqlite3", copied), daemon=True
        )
        original = sqlitebulk.BACKUP_STEP
        sqlitebulk.BACKUP_STEP = 1  # a step per page: many chances to start over
        try:
            copier.start()
            copier.join(60)
        finally:
            sqlitebulk.BACKUP_STEP = original
        assert not copier.is_alive(), "the backup did not finish while writes went on"
    finally:
        stop.set()
        writer.join()
        copier.join()
        store.close()
    copy = sqlite3.connect(tmp_path / "copy.sqlite3")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM nodes").fetchone()[0] >= 200
    copy.close()
    assert steps == sorted(steps) and len(steps) > 1
