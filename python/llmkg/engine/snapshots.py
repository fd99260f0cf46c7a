"""Index snapshots: the HNSW index, zstd-compressed, tagged with the last store sequence
it holds and the id of its store, written atomically; the two newest are kept. At start-up
the newest usable one is loaded and the store's changes after its tag are replayed into it.

``snapshots/index-<seq, 20 digits>-<store id, 32 hex digits>.llmkg.zst``: the name carries
the sequence and the store, the body is the index file format of the core (which checksums
itself), compressed (``.llmkg`` without the ``.zst`` when compression is off). The core
writes it (`HnswIndex.write_file`): encoded as a stream into zstd and into the file, with the
GIL released and no copy of the index in memory, the index as it was at one instant
(searches and inserts go on meanwhile: an insert waits for that instant's capture, not
for the write). A snapshot is skipped for the next older one when it fails to decompress
or to load, when it belongs to another store (a restore into a folder that kept old
snapshots), or when its sequence is ahead of the store (the store lost writes the snapshot
holds); with none left the index is rebuilt from the store. Never fatal, never data lost:
the store is the truth. Names without a store id (the first snapshot format) are never
loaded, only pruned.

A snapshot is published (renamed into place) only after the store has made durable every
write it holds (``before_publish``), so that no snapshot ever holds a write that a power
cut can take from the store: with ``durability="interval"`` the index may run ahead of
what is on disk, a published snapshot never does.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmkg._core import HnswIndex
from llmkg.progress import Progress

if TYPE_CHECKING:
    from llmkg.config.schema import Precision
    from llmkg.engine.quantization import AdaptivePrecision
    from llmkg.store import Store

log = logging.getLogger("llmkg.engine")

PATTERN = re.compile(r"^index-(\d{20})(?:-([0-9a-f]{32}))?\.llmkg(\.zst)?$")
KEEP = 2
REPLAY_BATCH = 10_000


@dataclass(frozen=True)
class Snapshot:
    path: Path
    seq: int
    store_id: str | None  # None: the first format, which named no store


def list_snapshots(directory: Path) -> list[Snapshot]:
    """Snapshots in ``directory``, newest first."""
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = PATTERN.match(entry.name)
        if match:
            found.append(Snapshot(entry, int(match.group(1)), match.group(2)))
    return sorted(found, key=lambda s: s.seq, reverse=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_snapshot(
    directory: Path,
    index: HnswIndex,
    seq: int,
    level: int | None,
    store_id: str,
    before_publish: Callable[[], None],
) -> Path:
    """Write ``index`` as the snapshot of ``seq`` in store ``store_id`` (temp file, fsync,
    ``before_publish()``, rename, fsync of the folder), zstd-compressed at ``level`` (None:
    uncompressed), then drop the snapshots that can no longer be loaded and all but the two
    newest."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"index-{seq:020d}-{store_id}.llmkg{'' if level is None else '.zst'}"
    tmp = directory / f".{final.name}.tmp-{os.getpid()}"
    try:
        # Written and fsynced by the core; publishing it is ours (it must wait for the store).
        index.write_file(tmp, level)
        # Everything the serialized index holds was committed before it: made durable now,
        # it is in the store whatever happens after the rename.
        before_publish()
        os.replace(tmp, final)
        _fsync_dir(directory)
    finally:
        tmp.unlink(missing_ok=True)
    # Snapshots of another store, or ahead of this one (of writes the store lost), can never
    # be loaded again: they go first, then all but the newest two.
    kept = []
    for old in list_snapshots(directory):
        if old.path != final and (old.store_id != store_id or old.seq > seq):
            old.path.unlink(missing_ok=True)
        else:
            kept.append(old)
    for old in kept[KEEP:]:
        old.path.unlink(missing_ok=True)
    return final


def read_snapshot(snapshot: Snapshot) -> HnswIndex:
    """Load one snapshot (the core tells a compressed one by its first bytes); raises on
    any damage (zstd or index checksum)."""
    return HnswIndex.load(snapshot.path)


def load_newest(
    directory: Path, dim: int, metric: str, store_id: str, store_seq: int
) -> tuple[HnswIndex, int] | None:
    """The newest snapshot of store ``store_id`` that is not ahead of ``store_seq`` (the
    store's last sequence), loads, and has the configured dimension and metric; with its
    sequence. (One saved without full rows loads too: the engine gives them back.)"""
    for snap in list_snapshots(directory):
        if snap.store_id != store_id:
            log.warning(
                "snapshot %s belongs to another store (this one is %s); ignored",
                snap.path.name,
                store_id,
            )
            continue
        if snap.seq > store_seq:
            log.warning(
                "snapshot %s is ahead of the store (sequence %d > %d: the store lost writes "
                "it holds); ignored",
                snap.path.name,
                snap.seq,
                store_seq,
            )
            continue
        try:
            index = read_snapshot(snap)
        except Exception as e:  # any damage means: try the next one
            log.warning("snapshot %s is unusable (%s); trying an older one", snap.path.name, e)
            continue
        found = (index.dim, index.metric)
        if found != (dim, metric):
            log.warning(
                "snapshot %s has (dim, metric) = %s, the config asks for %s; ignored",
                snap.path.name,
                found,
                (dim, metric),
            )
            continue
        return index, snap.seq
    return None


def reconcile(
    index: HnswIndex,
    store: Store,
    precision: AdaptivePrecision,
    live_ids: Iterable[int],
    replayed_to: int,
) -> bool:
    """After a snapshot was loaded and replayed up to ``replayed_to`` at least, make sure
    that the index holds exactly the store's live nodes (``live_ids``, read after the
    replay). A live node it lacks (a write that reached the store but not the index, e.g.
    one cut short by a shutdown, or another process's since the replay) is added; False
    when the index holds nodes that are not live in the store: then the snapshot is not to
    be trusted and the caller rebuilds.

    A store that other processes write to may have deleted nodes between the replay and
    the read of ``live_ids``: their tombstones come after ``replayed_to``, and they leave
    the index first, so that they do not pass for a bad snapshot."""
    deleted = [c.node_id for c in store.changes_after(replayed_to) if c.record is None]
    if deleted:
        index.remove(np.array(deleted, dtype=np.uint64))
    live = list(live_ids)
    missing = [i for i in live if i not in index]
    if len(index) != len(live) - len(missing):
        log.warning(
            "the index holds %d nodes that the store does not; rebuilding it from the store",
            len(index) - (len(live) - len(missing)),
        )
        return False
    if missing:
        log.warning("%d stored nodes were missing from the index; adding them", len(missing))
        records = store.get_many(missing)
        for start in range(0, len(missing), REPLAY_BATCH):
            rows = [records[i] for i in missing[start : start + REPLAY_BATCH] if i in records]
            if rows:
                index.add(
                    np.array([r.node_id for r in rows], dtype=np.uint64),
                    np.stack([r.embedding for r in rows]),
                    precision=[precision.for_new(r.confidence, r.reads) for r in rows],
                )
    return True


def replay(
    index: HnswIndex,
    store: Store,
    precision: AdaptivePrecision,
    after: int,
    progress: Progress | None = None,
) -> int:
    """Bring ``index`` (a snapshot tagged ``after``, or empty) up to the store: add the live
    nodes it lacks, drop the deleted ones. Returns how many changes were read; a long
    replay logs its progress."""
    if progress is None:
        progress = Progress(log, "replaying the store" if after else "rebuilding the index")
    ids: list[int] = []
    vectors: list[np.ndarray] = []
    precisions: list[Precision] = []
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
        progress.advance()
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
    progress.done()
    return count
