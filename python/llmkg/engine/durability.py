"""The engine's durability work: index snapshots (on demand, and in the background when
due, with a back-off after failures), backups, and the background thread that runs them
beside the precision passes. A mixin of `AllocationEngine`, whose state it uses."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from llmkg.engine import backup as backups
from llmkg.engine.checkpointing import CheckpointTracker
from llmkg.engine.snapshots import write_snapshot
from llmkg.progress import ProgressFactory
from llmkg.store.sqlite import DB_FILE

if TYPE_CHECKING:
    from llmkg._core import HnswIndex, Linker
    from llmkg.engine.config import EngineConfig
    from llmkg.engine.exclusion import WriteGate
    from llmkg.engine.filters import FactIndex
    from llmkg.engine.follow import Follower
    from llmkg.engine.quantization import AdaptivePrecision
    from llmkg.store import Store

log = logging.getLogger("llmkg.engine")


class Durability:
    config: EngineConfig
    store: Store
    index: HnswIndex
    linker: Linker
    precision: AdaptivePrecision
    facts: FactIndex
    snapshot_dir: Path
    snapshot_seq: int
    checkpoints: CheckpointTracker
    _gate: WriteGate
    _checkpoint_lock: threading.Lock
    _last_checkpoint: float
    _log_lock: threading.Lock
    _log_bytes: int
    _stop: threading.Event
    follower: Follower | None

    def _applied_seq(self) -> int:
        """A sequence number up to which every change is applied (maybe still pending)."""
        return self.store.committed_seq if self.follower is None else self.follower.applied

    def _quiesced_seq(self) -> int:
        """A sequence number up to which every write is in the index (linked, not pending)."""
        if self.follower is not None:
            # The follower applies every change, this engine's own included, in sequence
            # order, and advances `applied` after it has queued them for the linker: once
            # the linker has linked what was queued before, every change up to the value
            # read first is in the index. The index may hold later ones too; replay from
            # the tag applies them again, harmlessly. No write has to be held back.
            seq = self.follower.applied
            self.linker.wait_idle()
            return seq

        def linked_seq() -> int:
            self.linker.wait_idle()
            return self.store.committed_seq

        # First without holding writes back: a linker that is behind (or failing) then
        # costs this caller its wait, not every allocation meanwhile.
        self.linker.wait_idle()
        return self._gate.drained(linked_seq)

    def checkpoint(self) -> int:
        """Write an index snapshot now; returns the sequence it is tagged with. A failure
        is counted (``checkpoints``) and raised."""
        try:
            seq = self._checkpoint()
        except Exception as e:
            delay = self.checkpoints.failed(e)
            log.warning("checkpoint failed (%s); background retry in %.0fs", e, delay)
            raise
        self.checkpoints.succeeded()
        return seq

    def _checkpoint(self) -> int:
        self.precision.save_reads(self.store)
        with self._checkpoint_lock:
            # Before the index is serialized: no room left, no serializing.
            self.checkpoints.check_room(self.snapshot_dir)
            seq = self._quiesced_seq()
            with self._log_lock:
                self._log_bytes = 0
            write_snapshot(
                self.snapshot_dir,
                self.index,
                seq,
                self.config.compression_level,
                self.store.store_id,
                before_publish=self.store.sync,
            )
            self.snapshot_seq = seq
            self._last_checkpoint = time.monotonic()
            log.info("checkpoint at sequence %d", seq)
            return seq

    def backup(
        self,
        dest: str | os.PathLike[str] | None = None,
        progress: ProgressFactory = backups.log_progress,
    ) -> Path:
        """Write a consistent backup (store copy, index snapshot, manifest) into ``dest``,
        by default a new ``<backup_directory>/<UTC timestamp>/``; returns the folder.
        ``progress``: where the copy and the checksums report how far they are (log lines
        by default)."""
        c = self.config
        # Before any file is written: a store that its database backs up refuses here.
        self.store.check_backup()
        root = None
        if dest is None:
            # Beside the data, not in it: wiping the data directory must not take them.
            root = c.backup_directory or c.data_directory.with_name(
                c.data_directory.name + "-backups"
            )
            folder = backups.timestamped(root)
        else:
            folder = Path(dest)
            folder.mkdir(parents=True, exist_ok=True)
        with self._checkpoint_lock:
            seq = self._quiesced_seq()
            snapshot = write_snapshot(
                folder / "snapshots",
                self.index,
                seq,
                c.compression_level,
                self.store.store_id,
                before_publish=self.store.sync,
            )
        copying = progress("copying the store", None, "bytes")

        def copied(pages: int, total: int, page_size: int) -> None:
            copying.total = total * page_size
            copying.update(pages * page_size)

        self.store.backup_to(folder / DB_FILE, copied)
        copying.done()
        manifest = backups.write_manifest(
            folder, snapshot, seq, c.dim, c.metric, self.store.store_id, progress
        )
        log.info("backup of %d nodes written to %s", manifest["nodes"], folder)
        if root is not None:
            backups.prune(root, c.backup_retention)
        return folder

    def rebalance(self) -> dict[str, int]:
        """One pass of adaptive precision (the background thread runs one every 5 s): see
        `AdaptivePrecision.rebalance`."""
        self.linker.wait_idle()  # nodes allocated before the pass are in the index
        return self.precision.rebalance(self.index, self.store, self.facts.confidences)

    def _maintain(self) -> None:
        ticks = 0
        while not self._stop.wait(1.0):
            ticks += 1
            try:
                if ticks % 5 == 0:
                    self.rebalance()
            except Exception:
                log.exception("background rebalance failed; will retry")
            try:
                self._checkpoint_if_due()
            except Exception:
                log.exception("background checkpoint failed; will retry")

    def _checkpoint_if_due(self) -> bool:
        """Snapshot when ``checkpoint_interval`` has passed or when more than
        ``max_wal_size`` bytes of facts and vectors were written since the last snapshot
        (what a restart would have to replay)."""
        c = self.config
        if self._applied_seq() <= self.snapshot_seq or not self.checkpoints.may_retry():
            return False
        timed = (
            c.checkpoint_interval > 0
            and time.monotonic() - self._last_checkpoint >= c.checkpoint_interval
        )
        if not (timed or self._log_bytes > c.max_wal_size):
            return False
        self.checkpoint()
        return True

    def _logged(self, nbytes: int) -> None:
        with self._log_lock:
            self._log_bytes += nbytes
