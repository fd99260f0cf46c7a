"""Backups and restores: a restore writes only a backup's own files, only into a data
directory without llmkg files and without an engine on it; retention keeps the newest."""

from __future__ import annotations

import json
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
