"""Backups: a consistent copy of the store and an index snapshot, with a manifest of counts
and checksums; their restore; and the retention of the newest few.

A backup folder holds ``llmkg.sqlite3`` (SQLite's online backup: a consistent image),
``snapshots/index-<seq>-<store id>.llmkg.zst`` and ``manifest.json``. The snapshot is
written *before* the store is copied, so every node in it is in the copy too; the copy may
hold later writes, which a restored engine replays from the snapshot's sequence.

A restore writes only the files of that layout, only into a data directory that holds no
llmkg files yet (a stale ``-wal`` beside a restored store would be replayed into it, a
stale snapshot loaded over it), and only while no engine has that directory open.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmkg.engine.exclusion import lock_directory
from llmkg.engine.snapshots import PATTERN as SNAPSHOT_NAME
from llmkg.progress import Progress, ProgressFactory, log_lines
from llmkg.store.sqlite import DB_FILE, LAST_SEQ

log = logging.getLogger("llmkg.engine")
log_progress = log_lines(log)

MANIFEST = "manifest.json"
FORMAT = 1
# What a data directory holds once an engine used it: a restore refuses to mix them with a
# backup's files.
STORE_FILES = (DB_FILE, f"{DB_FILE}-wal", f"{DB_FILE}-shm", f"{DB_FILE}-journal")
STAMP = re.compile(r"^\d{8}T\d{6}\.\d{6}Z$")


class BackupError(ValueError):
    """A backup that cannot be restored: missing files, or checksums that do not match."""


BLOCK = 1 << 20  # bytes read at a time by checksums and copies


def sha256(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
            if progress is not None:
                progress.advance(len(block))
    return digest.hexdigest()


def _copy(src: Path, dest: Path, progress: Progress) -> None:
    """``shutil.copyfile`` a block at a time, so that a large store reports its copy."""
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        for block in iter(lambda: fin.read(BLOCK), b""):
            fout.write(block)
            progress.advance(len(block))


def timestamped(root: Path) -> Path:
    """A new folder under ``root`` named by the UTC time (unique even within a second)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = root / stamp
    path.mkdir(parents=True, exist_ok=False)
    return path


def prune(root: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` newest backups under ``root`` (the folders that
    `timestamped` made and that hold a manifest); returns the deleted ones."""
    folders = sorted(
        p for p in root.iterdir() if p.is_dir() and STAMP.match(p.name) and (p / MANIFEST).is_file()
    )
    doomed = folders[:-keep] if keep > 0 else []
    for folder in doomed:
        shutil.rmtree(folder)
        log.info("backup %s deleted (storage.backup_retention = %d)", folder, keep)
    return doomed


def _allowed_name(name: object) -> bool:
    """A manifest entry names one of the backup's own files: the store, or a snapshot in
    ``snapshots/``. Anything else (``../x``, an absolute path) is refused."""
    if not isinstance(name, str):
        return False
    if name == DB_FILE:
        return True
    folder, _, file = name.partition("/")
    return folder == "snapshots" and SNAPSHOT_NAME.match(file) is not None


def write_manifest(
    dest: Path,
    snapshot: Path,
    snapshot_seq: int,
    dim: int,
    metric: str,
    store_id: str,
    progress: ProgressFactory = log_progress,
) -> dict[str, Any]:
    db = dest / DB_FILE
    conn = sqlite3.connect(db)
    try:
        nodes = conn.execute("SELECT COUNT(*) FROM nodes WHERE deleted=0").fetchone()[0]
        store_seq = conn.execute(LAST_SEQ).fetchone()[0]
    finally:
        conn.close()
    files = [db, snapshot]
    checking = progress("checksumming the backup", sum(p.stat().st_size for p in files), "bytes")
    checksums = {p: sha256(p, checking) for p in files}
    checking.done()
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "nodes": nodes,
        "store_id": store_id,
        "store_seq": store_seq,
        "snapshot_seq": snapshot_seq,
        "dim": dim,
        "metric": metric,
        "files": {
            str(p.relative_to(dest)): {"bytes": p.stat().st_size, "sha256": checksums[p]}
            for p in files
        },
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify(backup: Path, progress: ProgressFactory = log_progress) -> dict[str, Any]:
    """The manifest of ``backup``, after checking every file against it."""
    try:
        manifest: dict[str, Any] = json.loads((backup / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackupError(f"{backup}: no readable {MANIFEST} ({e})") from None
    if not isinstance(files, dict) or DB_FILE not in files:
        raise BackupError(f"{backup}: the manifest lists no {DB_FILE}")
    checked: list[tuple[Path, Any]] = []
    for name, expected in files.items():
        if not _allowed_name(name):
            raise BackupError(
                f"{backup}: the manifest names {name!r}, which is not a file of a backup; "
                "refusing to restore"
            )
        if not isinstance(expected, dict):
            raise BackupError(f"{backup}: the manifest's entry of {name} is not an object")
        path = backup / name
        if not path.is_file():
            raise BackupError(f"{backup}: {name} is missing")
        checked.append((path, expected))
    # Every file is there before any is read: a missing one is told at once.
    reporter = progress("checking the backup", sum(p.stat().st_size for p, _ in checked), "bytes")
    for path, expected in checked:
        if sha256(path, reporter) != expected.get("sha256"):
            raise BackupError(
                f"{backup}: {path.relative_to(backup)} does not match its checksum; refusing "
                "to restore"
            )
    reporter.done()
    return manifest


def restore(
    backup: str | os.PathLike[str],
    data_directory: str | os.PathLike[str],
    progress: ProgressFactory = log_progress,
) -> dict[str, Any]:
    """Restore ``backup`` into ``data_directory`` (which must hold no llmkg files yet) after
    verifying every checksum; returns the manifest. Open an engine on the folder then.
    Raises ``DataDirectoryInUseError`` while an engine has the folder open. ``progress``:
    where the checks and the copies report how far they are."""
    src, dest = Path(backup), Path(data_directory)
    manifest = verify(src, progress)
    dest.mkdir(parents=True, exist_ok=True)
    lock = lock_directory(dest)
    try:
        present = [name for name in STORE_FILES if (dest / name).exists()]
        snapshots = dest / "snapshots"
        if snapshots.is_dir() and any(snapshots.iterdir()):
            present.append("snapshots/")
        if present:
            raise BackupError(
                f"{dest} already holds llmkg files ({', '.join(present)}); restore into an "
                "empty data directory"
            )
        sizes = sum((src / name).stat().st_size for name in manifest["files"])
        copying = progress("restoring", sizes, "bytes")
        for name in manifest["files"]:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.restoring")
            _copy(src / name, tmp, copying)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
        copying.done()
    finally:
        os.close(lock)
    return manifest
