"""Backups: a consistent copy of the store and an index snapshot, with a manifest of counts
and checksums; and their restore.

A backup folder holds ``llmkg.sqlite3`` (SQLite's online backup: a consistent image),
``snapshots/index-<seq>.llmkg.zst`` and ``manifest.json``. The snapshot is written
*before* the store is copied, so every node in it is in the copy too; the copy may hold
later writes, which a restored engine replays from the snapshot's sequence.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmkg.store.sqlite import DB_FILE, LAST_SEQ

MANIFEST = "manifest.json"
FORMAT = 1


class BackupError(ValueError):
    """A backup that cannot be restored: missing files, or checksums that do not match."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def timestamped(root: Path) -> Path:
    """A new folder under ``root`` named by the UTC time (unique even within a second)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = root / stamp
    path.mkdir(parents=True, exist_ok=False)
    return path


def write_manifest(
    dest: Path, snapshot: Path, snapshot_seq: int, dim: int, metric: str
) -> dict[str, Any]:
    db = dest / DB_FILE
    conn = sqlite3.connect(db)
    try:
        nodes = conn.execute("SELECT COUNT(*) FROM nodes WHERE deleted=0").fetchone()[0]
        store_seq = conn.execute(LAST_SEQ).fetchone()[0]
    finally:
        conn.close()
    files = [db, snapshot]
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(timezone.utc).isoformat(),
        "nodes": nodes,
        "store_seq": store_seq,
        "snapshot_seq": snapshot_seq,
        "dim": dim,
        "metric": metric,
        "files": {
            str(p.relative_to(dest)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
            for p in files
        },
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify(backup: Path) -> dict[str, Any]:
    """The manifest of ``backup``, after checking every file against it."""
    try:
        manifest = json.loads((backup / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BackupError(f"{backup}: no readable {MANIFEST} ({e})") from None
    if DB_FILE not in files:
        raise BackupError(f"{backup}: the manifest lists no {DB_FILE}")
    for name, expected in files.items():
        path = backup / name
        if not path.is_file():
            raise BackupError(f"{backup}: {name} is missing")
        if sha256(path) != expected.get("sha256"):
            raise BackupError(f"{backup}: {name} does not match its checksum; refusing to restore")
    return manifest


def restore(
    backup: str | os.PathLike[str], data_directory: str | os.PathLike[str]
) -> dict[str, Any]:
    """Restore ``backup`` into ``data_directory`` (which must hold no store yet) after
    verifying every checksum; returns the manifest. Open an engine on the folder then."""
    src, dest = Path(backup), Path(data_directory)
    manifest = verify(src)
    if (dest / DB_FILE).exists():
        raise BackupError(f"{dest} already holds a store; restore into an empty data directory")
    dest.mkdir(parents=True, exist_ok=True)
    for name in manifest["files"]:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.restoring")
        shutil.copyfile(src / name, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    return manifest
