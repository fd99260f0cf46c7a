"""Index snapshots: the HNSW index, zstd-compressed, tagged with the last store sequence
it holds, written atomically; the two newest are kept. At start-up the newest is loaded
and the store's changes after its tag are replayed into it.

``snapshots/index-<seq, 20 digits>.llmkg.zst``: the name carries the sequence, the body
is the index file format of the core (which checksums itself), compressed (``.llmkg``
without the ``.zst`` when compression is off). A snapshot
that fails to decompress or to load is skipped for the next older one; with none left
the index is rebuilt from the store. Never fatal, never data lost: the store is the truth.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zstandard

from llmkg._core import HnswIndex

if TYPE_CHECKING:
    from llmkg.engine.quantization import AdaptivePrecision
    from llmkg.store import SqliteStore

log = logging.getLogger("llmkg.engine")

PATTERN = re.compile(r"^index-(\d{20})\.llmkg(\.zst)?$")
KEEP = 2
REPLAY_BATCH = 10_000


@dataclass(frozen=True)
class Snapshot:
    path: Path
    seq: int


def list_snapshots(directory: Path) -> list[Snapshot]:
    """Snapshots in ``directory``, newest first."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = PATTERN.match(entry.name)
        if match:
            found.append(Snapshot(entry, int(match.group(1))))
    return sorted(found, key=lambda s: s.seq, reverse=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(directory: Path, index: HnswIndex, seq: int, level: int | None) -> Path:
    """Write ``index`` as the snapshot of ``seq`` (temp file, fsync, rename, fsync of the
    folder), zstd-compressed at ``level`` (None: uncompressed), then drop all but the two
    newest."""
    directory.mkdir(parents=True, exist_ok=True)
    data = index.to_bytes()
    final = directory / f"index-{seq:020d}.llmkg"
    if level is not None:
        data = zstandard.ZstdCompressor(level=level).compress(data)
        final = final.with_name(final.name + ".zst")
    tmp = directory / f".{final.name}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        _fsync_dir(directory)
    finally:
        tmp.unlink(missing_ok=True)
    for old in list_snapshots(directory)[KEEP:]:
        old.path.unlink(missing_ok=True)
    return final


def read_snapshot(snapshot: Snapshot) -> HnswIndex:
    """Load one snapshot; raises on any damage (zstd or index checksum)."""
    raw = snapshot.path.read_bytes()
    if snapshot.path.suffix == ".zst":
        raw = zstandard.ZstdDecompressor().decompress(raw)
    return HnswIndex.from_bytes(raw)


def load_newest(
    directory: Path, dim: int, metric: str, keep_full: bool
) -> tuple[HnswIndex, int] | None:
    """The newest snapshot that loads and matches the index settings, with its sequence."""
    for snap in list_snapshots(directory):
        try:
            index = read_snapshot(snap)
        except Exception as e:  # any damage means: try the next one
            log.warning("snapshot %s is unusable (%s); trying an older one", snap.path.name, e)
            continue
        found = (index.dim, index.metric, index.keep_full)
        if found != (dim, metric, keep_full):
            log.warning(
                "snapshot %s has (dim, metric, keep_full) = %s, the config asks for %s; ignored",
                snap.path.name,
                found,
                (dim, metric, keep_full),
            )
            continue
        return index, snap.seq
    return None


def replay(index: HnswIndex, store: SqliteStore, precision: AdaptivePrecision, after: int) -> int:
    """Bring ``index`` (a snapshot tagged ``after``, or empty) up to the store: add the live
    nodes it lacks, drop the deleted ones. Returns how many changes were read."""
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    precisions: list[str] = []
    removed: list[int] = []
    count = 0

    def flush() -> None:
        if ids:
            index.add(np.array(ids, dtype=np.uint64), np.stack(vectors), precision=precisions)
            ids.clear()
            vectors.clear()
            precisions.clear()

    for change in store.changes_after(after):
        count += 1
        if change.record is None:
            removed.append(change.node_id)
        elif change.node_id not in index:
            ids.append(change.node_id)
            vectors.append(change.record.embedding)
            precisions.append(precision.for_new(change.record.confidence, change.record.reads))
            if len(ids) >= REPLAY_BATCH:
                flush()
    flush()
    if removed:
        index.remove(np.array(removed, dtype=np.uint64))
    return count
